"""Config files: read a YAML file, apply ``--set`` overrides, translate another program's format.

The schema and its validation (:func:`~ptyrad_core.kernel.config.build_config`) are the kernel's;
this module turns a file on disk into the dict that is validated: the text decoded and parsed with
one-line errors (file, line or byte offset), overrides applied to the parsed dict, and a file whose
top level is not a native config offered to the ``ptyrad_translate_config`` hook.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ptyrad_core.kernel.config import Config, build_config, dotted
from ptyrad_core.kernel.errors import ConfigError


def parse_override(text: str) -> tuple[list, Any]:
    """``'recon.iterations=5'`` -> (['recon', 'iterations'], 5); list indices as ``loss.0.weight``."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected dotted.key=value")
    key, value = text.split("=", 1)
    parts: list = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    if not all(p != "" for p in parts):
        raise ConfigError(f"--set {text!r}: empty key part")
    parsed = load_yaml_text(value, f"--set {text!r}: the value")
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides or []:
        parts, value = parse_override(text)
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list):
                if not isinstance(part, int) or part >= len(node):
                    raise ConfigError(
                        f"--set {text!r}: {dotted(parts[: i + 1])} is not an existing list item"
                    )
                node = node[part]
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = [] if isinstance(nxt, int) else {}
                node = node[part]
        last = parts[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last > len(node):
                raise ConfigError(f"--set {text!r}: {dotted(parts)} is not an existing list item")
            if last == len(node):
                node.append(value)
            else:
                node[last] = value
        else:
            node[last] = value
    return raw


def read_yaml(path: Path) -> tuple[dict, str]:
    """Parse a YAML file into a dict; errors name the file and line (or byte offset)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; expected a YAML config file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    text = decode_text(data, path)
    raw = load_yaml_text(text, str(path))
    if raw is None:
        raise ConfigError(
            f"{path}: the file is empty (or only comments); expected a YAML mapping of sections"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return raw, text


def load_yaml_text(text: str, where: str):
    """``yaml.safe_load(text)``; malformed (or too deeply nested) YAML is a one-line ConfigError."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
        raise ConfigError(f"{at}: malformed YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{where}: malformed YAML: nested too deeply to read") from None


def decode_text(data: bytes, path) -> str:
    """The bytes of a YAML file as text: UTF-8 (an optional byte-order mark is dropped) without the
    control characters YAML forbids. Anything else (Latin-1 or UTF-16 text, a binary file) is a
    ConfigError naming the file and the byte offset of the first offending byte."""
    bom = b"\xef\xbb\xbf"
    skip = len(bom) if data.startswith(bom) else 0
    hint = ""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        hint = " (it looks like UTF-16 text)"
    elif data.startswith(b"\x89HDF"):
        hint = " (it is an HDF5 file)"
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        raise ConfigError(
            f"{path}: not UTF-8 text: byte {offset} is 0x{data[offset]:02x}{hint}; expected a UTF-8 YAML "
            "file (save it as UTF-8)"
        ) from None
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad:
        offset = skip + len(text[: bad.start()].encode("utf-8"))
        raise ConfigError(
            f"{path}: not a text file: byte {offset} is the control character {bad.group()!r}{hint}; "
            "expected a UTF-8 YAML file"
        )
    return text


def load_config(path: Path | str, overrides: list[str] | None = None, pm=None) -> Config:
    """Read, override and validate a YAML config (core schema only).

    A file whose top level is not a native config is offered to the ``ptyrad_translate_config``
    hook (``pm``: the plugin manager to ask; default: one with every installed plugin); the
    translation's notes are kept in ``config._notes``. Overrides whose first key is a native
    section apply to the translated config, the others to the file before translation.
    """
    path = Path(path)
    raw, text = read_yaml(path)
    if not is_native(raw):
        translated = translate_file(path, raw, overrides, pm)
        if translated is not None:
            native, notes = translated
            try:
                config = build_config(native, str(path), "", path.resolve().parent)
            except ConfigError as exc:
                raise ConfigError(
                    f"{path}: the config translated from this file is invalid:\n{exc}"
                ) from None
            config._notes = notes
            return config
    raw = apply_overrides(raw, overrides or [])
    return build_config(raw, str(path), text, path.resolve().parent)


def is_native(raw: dict) -> bool:
    """Whether every top-level key of a parsed config is a native section."""
    return set(raw) <= set(Config.model_fields)


def translate_file(
    path: Path, raw: dict, overrides: list[str] | None = None, pm=None
) -> tuple[dict, list[str]] | None:
    """A non-native config translated by the first plugin that recognises it: (native dict, notes).

    ``None`` when no plugin does and some top-level keys are native (a native config with unknown
    keys, left to the usual validation errors); a ConfigError naming the file when no key is.
    """
    native_sets: list[str] = []
    foreign_sets: list[str] = []
    for text in overrides or []:
        parts, _ = parse_override(text)
        (native_sets if parts[0] in Config.model_fields else foreign_sets).append(text)
    if pm is None:
        from ptyrad_core.kernel.plugin_manager import get_plugin_manager

        pm = get_plugin_manager()
    result = pm.hook.ptyrad_translate_config(
        raw=apply_overrides(copy.deepcopy(raw), foreign_sets), path=Path(path)
    )
    if result is None:
        if set(raw) & set(Config.model_fields):
            return None
        raise ConfigError(
            f"{path}: not a ptyrad_core config (top-level keys: {', '.join(map(str, raw))}; native sections: "
            f"{', '.join(Config.model_fields)}), and no installed plugin translates its format"
        )
    native, notes = result
    return apply_overrides(native, native_sets), [str(n) for n in notes]
