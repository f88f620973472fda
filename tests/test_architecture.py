"""The layers of ptyrad_core, checked from the import graph (docs/architecture.md).

Every module under ``ptyrad_core/``, ``plugins/`` and ``contrib/*/`` is parsed with :mod:`ast`
(nothing is imported); every ``import`` / ``from ... import`` counts, including those inside
functions (a lazy import is still a dependency), except under ``if TYPE_CHECKING:`` (type
annotations only, never executed). ``from a.b import c`` is an edge to the module ``a.b.c`` when
that module exists, else to ``a.b``. The implicit import of a parent package (``ptyrad_core`` when
``ptyrad_core.kernel.fft`` is imported) is not an edge: it is Python's mechanics, not a choice.

The rules:

- **Layers.** ``ptyrad_core.<layer>.*`` with the order apps > observers > engine > setup > kernel;
  a module imports its own layer or layers below it, never one above.
- **The public faces** are the three modules outside the layer folders, and each is placed where
  what it serves needs it:

  - ``ptyrad_core`` (the package ``__init__``: ``run``, ``load_result``, ``hookimpl``,
    ``__version__``) and ``ptyrad_core.plugin`` (the plugin SDK) are *facades*, as ``pytest`` is
    over ``_pytest``: each re-exports, under its audience's names, what it needs from any layer
    (the SDK: the kernel's bases and objects, and the result-file and output-file services of
    ``setup`` and ``engine`` that plugins use), so each sits above every layer: it may import
    any layer, and no module of ``ptyrad_core`` imports it. Nothing is lost by that: the kernel
    loads plugins by entry point (a name, not an import), so the layers never depend on a
    plugin, and ``__version__`` is defined in ``ptyrad_core.kernel``, so that any layer can name
    it without importing the top.
  - ``ptyrad_core.testing`` (the pytest fixtures for plugin authors) belongs to the kernel: it
    imports only the kernel, and kernel modules do not import it.
- **No cycles** between modules (functions-level imports included).
- **Plugins** (``plugins/``, ``contrib/*/`` packages, their tests excepted) import from
  ptyrad_core only ``ptyrad_core.plugin``: the one public module for plugin authors.
- **Size.** The kernel package is at most 4,000 lines.
- **The module table** of docs/architecture.md has exactly one row per module of ``ptyrad_core/``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ptyrad_core"
LAYERS = ("kernel", "setup", "engine", "observers", "apps")  # bottom to top
KERNEL_FACADE = {"ptyrad_core.testing"}  # counts as the kernel layer
TOP = "ptyrad_core"  # the package __init__: above every layer
FACADES = {TOP, "ptyrad_core.plugin"}  # above every layer: import any layer, imported by no module
MAX_KERNEL_LINES = 4000


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, tuple[str, ...], int]]:
    """``[(module imported, names taken from it, line), ...]`` outside ``if TYPE_CHECKING:`` blocks."""
    found: list[tuple[str, tuple[str, ...], int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, (), node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, tuple(alias.name for alias in node.names), node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def collect(base: Path, paths) -> dict[str, tuple[Path, list[tuple[str, tuple[str, ...], int]]]]:
    out = {}
    for path in sorted(paths):
        name = module_name(path, base)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        out[name] = (path, imported_names(tree, name, path.name == "__init__.py"))
    return out


CORE = collect(ROOT, PACKAGE.rglob("*.py"))
CORE_MODULES = set(CORE)


def resolve(target: str, names: tuple[str, ...]) -> list[str]:
    """The ptyrad_core modules an import statement loads (a name that is a submodule counts as one)."""
    if not (target == TOP or target.startswith(TOP + ".")):
        return []
    subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in CORE_MODULES]
    rest = [n for n in names if f"{target}.{n}" not in CORE_MODULES]
    return subs + ([target] if rest or not names else [])


def edges() -> dict[str, set[tuple[str, int]]]:
    graph: dict[str, set[tuple[str, int]]] = {}
    for name, (_, imports) in CORE.items():
        graph[name] = {
            (t, line) for target, names, line in imports for t in resolve(target, names) if t != name
        }
    return graph


def layer(module: str) -> int | None:
    """Index in LAYERS; the kernel facade counts as the kernel; None for the facades (above every layer)."""
    if module in KERNEL_FACADE:
        return 0
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def test_the_graph_sees_every_module_and_lazy_imports():
    assert {"ptyrad_core", "ptyrad_core.plugin", "ptyrad_core.kernel.plugin_manager"} <= CORE_MODULES
    outside = [m for m in CORE_MODULES if m not in FACADES and layer(m) is None]
    assert not outside, f"modules outside the layer folders: {outside}"
    graph = edges()
    # a lazy (function-level) import is an edge: run() imports the engine inside the function
    assert any(t == "ptyrad_core.engine.loop" for t, _ in graph[TOP])
    # ``from ptyrad_core.kernel import ops`` names the module ops, not the package
    src = "from ptyrad_core.kernel import ops\nif TYPE_CHECKING:\n    import ptyrad_core.apps.cli\n"
    found = imported_names(ast.parse(src), "ptyrad_core.plugin", False)
    assert [t for target, names, _ in found for t in resolve(target, names)] == ["ptyrad_core.kernel.ops"]


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for name, targets in edges().items():
        here = layer(name)
        for target, line in sorted(targets):
            if name in FACADES:
                continue  # a facade may import anything
            there = layer(target)
            if target in FACADES:
                upward.append(f"{CORE[name][0].relative_to(ROOT)}:{line}: {name} imports the facade {target}")
            elif there is not None and here is not None and there > here:
                upward.append(
                    f"{CORE[name][0].relative_to(ROOT)}:{line}: {name} ({LAYERS[here]}) imports "
                    f"{target} ({LAYERS[there]})"
                )
    assert not upward, "imports must point down (apps > observers > engine > setup > kernel):\n" + "\n".join(
        upward
    )


def test_the_kernel_imports_no_layer_above_even_by_string():
    """importlib by name is allowed only for the core observers' module list (DEFAULT_PLUGINS)."""
    from ptyrad_core.kernel.plugin_manager import DEFAULT_PLUGINS

    assert DEFAULT_PLUGINS and all(
        m.startswith("ptyrad_core.observers.") and m in CORE_MODULES for m in DEFAULT_PLUGINS
    )
    named = []
    for name, (path, _) in CORE.items():
        if layer(name) == 0 and not name.startswith("ptyrad_core.kernel.plugin_manager"):
            for m in re.finditer(r"[\"']ptyrad_core\.(setup|engine|observers|apps)\.\w+", path.read_text()):
                named.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not named, "\n".join(named)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = {name: {t for t, _ in targets} for name, targets in edges().items()}
    found = cycles(graph)
    assert not found, "import cycles (functions-level imports included):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def plugin_sources() -> list[Path]:
    paths = list((ROOT / "plugins").rglob("*.py"))
    for package in (ROOT / "contrib").iterdir():
        if package.is_dir():
            paths += [p for p in package.rglob("*.py") if "tests" not in p.relative_to(package).parts]
    return sorted(paths)


def test_plugins_import_only_the_plugin_module():
    offending = []
    for path in plugin_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, _, line in imported_names(tree, "plugin_module", False):
            if (target == TOP or target.startswith(TOP + ".")) and target != "ptyrad_core.plugin":
                offending.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert plugin_sources(), "no plugin sources found"
    assert not offending, "plugins import only ptyrad_core.plugin:\n" + "\n".join(offending)


def test_the_kernel_is_at_most_4000_lines():
    sizes = {
        p.relative_to(ROOT): len(p.read_text(encoding="utf-8").splitlines())
        for p in (PACKAGE / "kernel").rglob("*.py")
    }
    total = sum(sizes.values())
    biggest = ", ".join(f"{p} {n}" for p, n in sorted(sizes.items(), key=lambda kv: -kv[1])[:5])
    assert total <= MAX_KERNEL_LINES, (
        f"ptyrad_core/kernel has {total} lines (at most {MAX_KERNEL_LINES}); largest: {biggest}"
    )


def table_modules() -> set[str]:
    """Module paths in the rows of docs/architecture.md's module table(s): ``| `kernel/fft.py` | ... |``."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `((?:[\w]+/)*[\w]+\.py)` \|", text, flags=re.M))


def test_the_architecture_table_lists_every_module():
    # the layer folders' __init__.py hold a docstring only; the package's own __init__.py is the top
    actual = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"} | {
        "__init__.py"
    }
    listed = table_modules()
    missing, stale = sorted(actual - listed), sorted(listed - actual)
    assert not missing and not stale, (
        f"docs/architecture.md module table: missing rows {missing}; rows without a module {stale}"
    )


def test_code_pointers_into_benchmarks_name_existing_sections():
    """Figures live in docs/benchmarks.md; code keeps the reason and a pointer to the section
    (``docs/benchmarks.md, "FFT libraries"``), which must exist."""
    headings = set(
        re.findall(
            r"^##+ (.+?)\s*$", (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8"), flags=re.M
        )
    )
    pointers = []
    for path in [*PACKAGE.rglob("*.py"), *plugin_sources()]:
        # comments and docstrings wrap: join the lines, dropping the comment markers
        text = re.sub(r"\s*\n\s*(?:#:?\s*)?", " ", path.read_text(encoding="utf-8"))
        pointers += [
            (path, m.group(1)) for m in re.finditer(r"docs/benchmarks\.md[,;:]?\s+\"([^\"]+)\"", text)
        ]
    assert any(section == "FFT libraries" for _, section in pointers)
    missing = [f'{p.relative_to(ROOT)}: "{section}"' for p, section in pointers if section not in headings]
    assert not missing, "sections of docs/benchmarks.md that do not exist:\n" + "\n".join(missing)
