"""``ptyrad-core new-plugin NAME --family FAMILY [--dir DIR]``: write a plugin package that runs.

The package is what ``contrib/`` holds and what a researcher publishes: a PEP 621
``pyproject.toml`` with the entry point in the ``ptyrad_core.plugins`` group, the plugin module
(a component with its pydantic ``Options`` model and the registration hook, doing something
trivial but valid), a test file that passes as generated (discovery through the entry point,
options, the component on its own, and a short reconstruction on simulated data through it),
and a README. ``pip install -e DIR/ptyrad-NAME`` and ``pytest DIR/ptyrad-NAME/tests`` work at
once; then the component's body is replaced by the real thing.

Names: ``NAME`` (lowercase identifier) is the component's name in a config; the import package
is ``ptyrad_NAME`` and the distribution ``ptyrad-NAME`` (a leading ``ptyrad_`` is not doubled).
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from ptyrad_core.kernel.errors import PtyradError
from ptyrad_core.kernel.plugin_manager import ENTRY_POINT_GROUP, FAMILIES


@dataclass(frozen=True)
class Names:
    name: str  # component name in a config
    cls: str  # class name
    pkg: str  # import package
    dist: str  # distribution
    family: str

    def mapping(self) -> dict[str, str]:
        from ptyrad_core.kernel import __version__

        return {
            "NAME": self.name,
            "CLASS": self.cls,
            "PKG": self.pkg,
            "DIST": self.dist,
            "FAMILY": self.family,
            "HOOK": FAMILIES[self.family],
            "GROUP": ENTRY_POINT_GROUP,
            "CORE_VERSION": __version__,
            "TITLE": TITLES[self.family],
            "BASE": BASES[self.family],
        }


#: the ``ptyrad_core.plugin`` base class each family's component subclasses
BASES = {
    "loss": "LossTerm",
    "constraint": "Constraint",
    "forward": "ForwardExtension",
    "detector": "DetectorModel",
    "loader": "Loader",
    "preprocess": "Preprocessor",
    "result_reader": "ResultReader",
}

TITLES = {
    "loss": "loss term",
    "constraint": "constraint",
    "forward": "forward-model extension",
    "detector": "detector stage",
    "loader": "data loader",
    "preprocess": "preprocessing step",
    "result_reader": "reader of previous reconstructions",
}


def names_for(name: str, family: str) -> Names:
    if family not in FAMILIES:
        raise PtyradError(f"--family: unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    if (
        not re.fullmatch(r"[a-z][a-z0-9_]*", name or "")
        or keyword.iskeyword(name)
        or name.endswith("_")
        or "__" in name
    ):
        raise PtyradError(
            f"plugin name {name!r}: use a lowercase identifier (letters, digits, single underscores, "
            "starting with a letter), e.g. 'my_filter'; it is the component's name in a config"
        )
    pkg = name if name.startswith("ptyrad_") else f"ptyrad_{name}"
    if len(pkg) > 100:
        raise PtyradError(f"plugin name {name!r}: {len(name)} characters; use at most 90")
    if importlib.util.find_spec(pkg) is not None:  # installing the new package would shadow it
        raise PtyradError(
            f"plugin name {name!r}: its package {pkg!r} is an installed module (e.g. ptyrad_core itself); "
            "choose another name"
        )
    cls = "".join(part.capitalize() for part in name.split("_"))
    return Names(name, cls, pkg, pkg.replace("_", "-"), family)


# --------------------------------------------------------------------------------------------
# the files: ptyrad_core/apps/templates (package data), string.Template text with ${NAME} fields
# --------------------------------------------------------------------------------------------

#: The template folder: ``pyproject.toml.tmpl``, ``README.md.tmpl``, ``__init__.py.tmpl`` and
#: ``test_plugin.py.tmpl`` shared by every family; per family ``<family>/plugin.py.tmpl`` (the whole
#: plugin module), ``<family>/config.yaml.tmpl`` (how a config selects it, for the README) and
#: ``<family>/tests.py.tmpl`` (its test imports, then, after two blank lines, its unit tests and the
#: ``configure_run`` / ``check_run`` functions the shared reconstruction test calls).
TEMPLATE_DIR = "templates"


def template(rel: str) -> str:
    """The text of one template file, ``rel`` relative to the template folder."""
    return resources.files(__package__).joinpath(TEMPLATE_DIR, *rel.split("/")).read_text(encoding="utf-8")


def render(text: str, mapping: dict[str, str]) -> str:
    return Template(text).substitute(mapping)


def merge_imports(text: str, extra: str, package: str) -> str:
    """``text`` (a module) with the import lines ``extra`` merged into its import block.

    The block (after ``from __future__ import annotations``, up to the last import line) is
    written back in isort's order as the generated package sees it: standard library, installed
    packages (ptyrad_core among them), then ``package`` itself; in each, ``import x`` lines
    before ``from x import ...`` lines, and the names of ``from`` lines of one module merged.
    """
    head, sep, rest = text.partition("from __future__ import annotations\n\n")
    lines = [ln for ln in rest.splitlines() if ln.startswith(("import ", "from "))]
    rest = rest[rest.index(lines[-1]) + len(lines[-1]) :]
    straight: set[str] = set()
    names: dict[str, set[str]] = {}
    for line in [*lines, *(ln for ln in extra.splitlines() if ln.strip())]:
        if line.startswith("import "):
            straight.add(line)
        else:
            module, _, listed = line.removeprefix("from ").partition(" import ")
            names.setdefault(module, set()).update(n.strip() for n in listed.split(","))

    def section(module: str) -> int:
        top = module.split(".")[0]
        return 0 if top in sys.stdlib_module_names else 2 if top == package else 1

    def order(name: str) -> tuple[bool, str]:  # classes and constants before functions, as isort
        return not name[0].isupper(), name

    entries = [(section(ln.split()[1]), 0, ln.split()[1].lower(), ln) for ln in straight]
    for module, listed in names.items():
        line = f"from {module} import {', '.join(sorted(listed, key=order))}"
        entries.append((section(module), 1, module.lower(), line))
    out: list[str] = []
    previous = None
    for sec, _, _, line in sorted(entries):
        if previous is not None and sec != previous:
            out.append("")
        out.append(line)
        previous = sec
    return head + sep + "\n".join(out) + rest


def new_plugin(name: str, family: str, directory: Path | str = ".", *, overwrite: bool = False) -> Path:
    """Write the package ``DIRECTORY/ptyrad-NAME``; return its folder.

    An existing, non-empty package folder is refused unless ``overwrite``; then the template's
    files are written over (other files in the folder are left alone).
    """
    from ptyrad_core.engine.outputs import prepare_folder
    from ptyrad_core.kernel.errors import OutputError

    n = names_for(name, family)
    root = Path(directory) / n.dist
    if root.exists() and not root.is_dir():
        raise OutputError(
            f"--dir: {str(root)!r} exists and is a file, not a package folder; choose another name or --dir"
        )
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise OutputError(
            f"--dir: {str(root)!r} already exists and is not empty; pass --overwrite to write the package "
            "files over it, or choose another name or --dir"
        )
    mapping = n.mapping()
    mapping["YAML"] = render(template(f"{family}/config.yaml.tmpl"), mapping).rstrip("\n")
    test_imports, _, test_body = render(template(f"{family}/tests.py.tmpl"), mapping).partition("\n\n\n")
    files = {
        "pyproject.toml": render(template("pyproject.toml.tmpl"), mapping),
        "README.md": render(template("README.md.tmpl"), mapping),
        f"{n.pkg}/__init__.py": render(template("__init__.py.tmpl"), mapping),
        f"{n.pkg}/plugin.py": render(template(f"{family}/plugin.py.tmpl"), mapping),
        f"tests/test_{n.pkg}.py": merge_imports(
            render(template("test_plugin.py.tmpl"), {**mapping, "TEST_BODY": test_body.strip("\n")}),
            test_imports,
            n.pkg,
        ),
    }
    for rel in files:  # a file where a folder of the package goes, or the reverse: refused before writing any
        path = root / rel
        if path.is_dir():
            raise OutputError(f"--dir: {str(path)!r} is a folder where the package has a file")
    prepare_folder(root, "--dir")
    for rel, text in files.items():
        path = root / rel
        prepare_folder(path.parent, "--dir")
        path.write_text(text)
    return root
