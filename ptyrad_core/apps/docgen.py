"""Reference pages generated from the code: hooks, config and built-in plugins.

``docs/hooks.md``, ``docs/config.md`` and ``docs/plugins.md`` are the output of
``ptyrad-core docs hooks|config|plugins``; a test fails when they drift from the code.
"""

from __future__ import annotations

import inspect
import typing

from pydantic import BaseModel

from ptyrad_core.kernel import hookspecs
from ptyrad_core.kernel.config import Config


def hooks_reference() -> str:
    lines = [
        "# Hook reference",
        "",
        "Generated from `ptyrad_core/kernel/hookspecs.py` by `ptyrad-core docs hooks`; do not edit by hand.",
        "",
        inspect.getdoc(hookspecs) or "",
        "",
    ]
    for name, func in vars(hookspecs).items():
        if not (name.startswith("ptyrad_") and callable(func)):
            continue
        opts = getattr(func, "ptyrad_core_spec", {}) or {}
        flags = [k for k in ("firstresult", "historic") if opts.get(k)]
        sig = str(inspect.signature(func)).replace("'", "")  # annotations are strings (postponed)
        lines += [f"## `{name}{sig}`", ""]
        if flags:
            lines += [f"*{', '.join(flags)}*", ""]
        lines += [inspect.getdoc(func) or "", ""]
    return "\n".join(lines).rstrip() + "\n"


def _type_name(annotation) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    text = text or str(annotation).replace("typing.", "").replace("pathlib.", "")
    return text.replace("|", "\\|")


def _options_table(model: type[BaseModel]) -> list[str]:
    fields = model.model_fields
    if not fields:
        return ["No options.", ""]
    lines = ["| option | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{_type_name(field.annotation)}` | `{default}` | {desc} |")
    return lines + [""]


def plugins_reference(pm=None) -> str:
    """Every component that ptyrad-core itself ships, with its formula and options."""
    from ptyrad_core.kernel.plugin_manager import FAMILIES, get_plugin_manager

    pm = pm or get_plugin_manager(autoload=False)
    titles = {
        "loss": "Loss terms",
        "constraint": "Constraints",
        "forward": "Forward-model extensions",
        "detector": "Detector models",
        "loader": "Data loaders",
        "preprocess": "Preprocessing steps",
        "result_reader": "Readers of previous reconstructions",
    }
    lines = [
        "# Built-in plugins",
        "",
        "Generated from the plugins' docstrings and option models by `ptyrad-core docs plugins`; do not",
        "edit by hand. Each is its own module in `plugins/ptyrad_core_plugins/`, registered through the",
        "`ptyrad_core.plugins` entry-point group. Select them by name in a config (see",
        "[authoring.md](authoring.md) for writing your own).",
        "",
    ]
    for family in FAMILIES:
        entries = [e for e in pm.registry(family).entries() if pm.info[e.plugin].source == "built-in"]
        lines += [f"## {titles[family]}", ""]
        if not entries:
            lines += ["None yet.", ""]
        for entry in entries:
            module = inspect.getmodule(entry.cls)
            lines += [f"### `{entry.name}`", "", f"Plugin `{entry.plugin}` (`{module.__name__}`).", ""]
            lines += [inspect.getdoc(module) or inspect.getdoc(entry.cls) or "", ""]
            lines += _options_table(entry.cls.Options)
    translators = [
        i for i in pm.info.values() if i.source == "built-in" and "ptyrad_translate_config" in i.hooks
    ]
    lines += ["## Config translators", ""]
    for info in translators:
        module = pm.get_plugin(info.name)
        lines += [f"### `{info.name}`", "", inspect.getdoc(module) or "", ""]
    return "\n".join(lines).rstrip() + "\n"


def _model_section(model: type[BaseModel], path: str, lines: list[str], seen: set) -> None:
    if model in seen and path:
        return
    seen.add(model)
    lines += [f"## `{path or '(top level)'}`", ""]
    doc = inspect.getdoc(model)
    if doc and model.__doc__:
        lines += [doc, ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    nested = []
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        if len(default) > 40:
            default = "see below"
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name}` | `{_type_name(field.annotation)}` | `{default}` | {desc} |")
        for arg in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                nested.append((f"{path}.{name}" if path else name, arg))
            for inner in typing.get_args(arg):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    nested.append((f"{path}.{name}[]" if path else f"{name}[]", inner))
    lines.append("")
    for sub_path, sub in nested:
        _model_section(sub, sub_path, lines, seen)


def config_reference() -> str:
    lines = [
        "# Config reference",
        "",
        "Generated from the pydantic models in `ptyrad_core/kernel/config.py` by `ptyrad-core docs config`;",
        "do not edit by hand. Each plugin component validates its own `options`: list them with",
        "`ptyrad-core plugins --schema`.",
        "",
    ]
    _model_section(Config, "", lines, set())
    return "\n".join(lines).rstrip() + "\n"
