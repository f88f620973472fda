# make demo   set up .venv if needed, then run the embedded demo reconstruction (configs/demo.yaml)
# make test   set up .venv if needed, then run the test suite
# make docs   build the documentation site into output/site (strict)
VENV ?= .venv
STAMP := $(VENV)/.bootstrap-stamp

.PHONY: demo test setup docs-ref docs

$(STAMP): pyproject.toml scripts/bootstrap.sh $(wildcard contrib/*/pyproject.toml)
	VENV=$(VENV) scripts/bootstrap.sh
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ptyrad-core run configs/demo.yaml

test: $(STAMP)
	$(VENV)/bin/python -m pytest

docs-ref: $(STAMP)
	$(VENV)/bin/ptyrad-core docs hooks > docs/hooks.md
	$(VENV)/bin/ptyrad-core docs config > docs/config.md
	$(VENV)/bin/ptyrad-core docs plugins > docs/plugins.md

docs: $(STAMP) docs-ref
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
