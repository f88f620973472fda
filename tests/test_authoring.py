"""docs/authoring.md is enough to write a plugin: its examples, taken from the page itself (so the
page and these tests cannot drift), import only ``ptyrad_core.plugin``, register in their family
and, for the constraint, run in a reconstruction and do what their formula says.

The acceptance test of issue 16: a new constraint written from the page alone imports only
``ptyrad_core.plugin`` and its plugin module is at most 12 lines without the docstring.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

import ptyrad_core
from ptyrad_core import plugin as sdk
from ptyrad_core.kernel.plugin_manager import FAMILIES, get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "authoring.md"

#: family -> the example module of the page that shows it, and its base class in the SDK
EXAMPLES = {
    "loss": ("my_loss.py", sdk.LossTerm),
    "constraint": ("my_constraints.py", sdk.Constraint),
    "forward": ("my_forward.py", sdk.ForwardExtension),
    "detector": ("my_detector.py", sdk.DetectorModel),
    "loader": ("my_loader.py", sdk.Loader),
    "preprocess": ("my_preprocess.py", sdk.Preprocessor),
    "result_reader": ("my_reader.py", sdk.ResultReader),
}


def examples() -> dict[str, str]:
    """``{file name: source}`` of every python block of the page whose first line names its file."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    return {m.group(1): block for block in blocks if (m := re.match(r"# (\w+\.py)", block))}


def imported_modules(source: str) -> set[str]:
    tree = ast.parse(source)
    found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return found | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def code_lines(source: str) -> list[str]:
    """The lines of a module that count: not blank, not a comment, not the module docstring."""
    tree = ast.parse(source)
    skip: set[int] = set()
    if ast.get_docstring(tree) is not None:
        doc = tree.body[0]
        skip = set(range(doc.lineno, doc.end_lineno + 1))
    return [
        line
        for i, line in enumerate(source.splitlines(), 1)
        if i not in skip and line.strip() and not line.lstrip().startswith("#")
    ]


def write_example(name: str, folder: Path) -> Path:
    path = folder / name
    path.write_text(examples()[name])
    return path


def test_the_page_covers_the_seven_families():
    assert set(EXAMPLES) == set(FAMILIES)
    text = PAGE.read_text()
    for family, (name, base) in EXAMPLES.items():
        assert name in examples(), f"docs/authoring.md has no python block starting '# {name}' ({family})"
        assert f"`{base.__name__}`" in text and FAMILIES[family] in text, family
    assert "from ptyrad_core.plugin import" in text


@pytest.mark.parametrize("family", list(EXAMPLES))
def test_every_example_imports_only_the_sdk_and_registers(family, tmp_path):
    name, base = EXAMPLES[family]
    source = examples()[name]
    ours = {m for m in imported_modules(source) if m.split(".")[0] == "ptyrad_core"}
    assert ours == {"ptyrad_core.plugin"}, f"{name} imports {ours}"
    pm = get_plugin_manager([str(write_example(name, tmp_path))], autoload=False)
    mine = [
        e for e in pm.registry(family).entries() if e.plugin == Path(name).stem
    ]  # a file's plugin: its stem
    assert mine, f"{name} registers nothing in the {family} family"
    for entry in mine:
        assert issubclass(entry.cls, base), (entry.name, entry.cls.__mro__)
        fields = entry.cls.Options.model_fields
        assert all(f.description for f in fields.values()), f"{entry.name}: a field without a description"


def test_a_constraint_from_the_page_alone(tiny_config):
    """The page's constraint: only the SDK, at most 12 lines, and A' = min(max(A, low), high) in a run.

    One iteration with and without it (same seed, so the same model up to the constraint): the
    constrained amplitude is the unconstrained one clipped to [low, high], with bounds chosen
    inside the unconstrained amplitude's range so that the clamp changes it.
    """
    source = examples()["my_constraints.py"]
    assert {m for m in imported_modules(source) if m.startswith("ptyrad")} == {"ptyrad_core.plugin"}
    lines = code_lines(source)
    assert len(lines) <= 12, "\n".join(lines)

    def config(**sections):
        cfg = tiny_config(**sections)
        cfg["recon"]["iterations"] = 1
        cfg["update"] = {"object_amplitude": {"lr": 0.05}}
        return cfg

    plain = ptyrad_core.run(config()).model.object_amplitude.detach().numpy().copy()
    low, high = (float(q) for q in np.quantile(plain, [0.25, 0.75]))
    assert low < high
    path = write_example("my_constraints.py", Path(tiny_config()["output"]["dir"]).parent)
    constrained = (
        ptyrad_core.run(
            config(
                plugins={"modules": [str(path)]},
                constraints=[
                    {
                        "name": "clamp_amplitude",
                        "options": {"low": low, "high": high},
                        "start_iter": 1,
                        "step": 1,
                    }
                ],
            )
        )
        .model.object_amplitude.detach()
        .numpy()
    )
    np.testing.assert_allclose(constrained, np.clip(plain, low, high), rtol=0, atol=1e-6)
    assert (constrained == np.float32(low)).any() and (constrained == np.float32(high)).any()
