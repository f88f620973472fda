# make demo   set up .venv if needed, then run the embedded demo reconstruction (configs/demo.yaml)
# make test   set up .venv if needed, then run the whole test suite (the tests marked slow last)
# make test-fast  the edit loop: the suite without the tests marked slow (long reconstructions,
#                  tests that start processes or install packages; see tests/conftest.py)
# make lint   ruff (format check + lint, line length 110) over the code, mypy over ptyrad_core/kernel
# make docs   build the documentation site into output/site (strict)
VENV ?= .venv
STAMP := $(VENV)/.bootstrap-stamp

.PHONY: demo test test-fast lint setup docs-ref docs

$(STAMP): pyproject.toml scripts/bootstrap.sh $(wildcard contrib/*/pyproject.toml)
	VENV=$(VENV) scripts/bootstrap.sh
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ptyrad-core run configs/demo.yaml

test: $(STAMP)
	$(VENV)/bin/python -m pytest

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow"

LINT_PATHS := ptyrad_core plugins contrib tests benchmarks scripts
lint: $(STAMP)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy

docs-ref: $(STAMP)
	$(VENV)/bin/ptyrad-core docs hooks > docs/hooks.md
	$(VENV)/bin/ptyrad-core docs config > docs/config.md
	$(VENV)/bin/ptyrad-core docs plugins > docs/plugins.md

docs: $(STAMP) docs-ref
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
