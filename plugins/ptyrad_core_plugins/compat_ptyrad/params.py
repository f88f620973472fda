"""The params file as PtyRAD reads it: PtyRAD's defaults behind every option, its parser's legacy
spellings, and the bookkeeping of what became of each key (carried over, noted, or an error)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

from ptyrad_core.plugin import ConfigError

from .. import _ptyrad_defaults as D
from .tables import LEGACY_ABERRATIONS, NATIVE_SECTIONS, OUTPUT_FIELDS, SECTIONS


def native_sections() -> set[str]:
    """The native config's top-level sections."""
    return set(NATIVE_SECTIONS)


def output_fields() -> set[str]:
    """The native ``output`` section's keys (folder naming and figures where the kernel has them)."""
    return set(OUTPUT_FIELDS)


# --------------------------------------------------------------------------------------------
# bookkeeping: what the file gives, PtyRAD's defaults behind it, and what became of each key
# --------------------------------------------------------------------------------------------


class Translation:
    """The native config, the notes, and the PtyRAD options carried over (dotted names)."""

    def __init__(self, raw: dict, path, cwd=None):
        self.raw = raw
        self.path = Path(path)
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.config: dict = {}
        self.notes: list[str] = []
        self.mapped: set[str] = set()
        self.noted: set[str] = set()
        self.defaults: list[str] = []
        self.hypertune: Node | None = None

    def note(self, names, text: str) -> None:
        names = [names] if isinstance(names, str) else list(names)
        self.noted.update(names)
        self.notes.append(f"{', '.join(names)}: {text}")

    def fail(self, name: str, text: str):
        raise ConfigError(f"{self.path}: {name}: {text}")

    def absolute(self, name: str, value) -> str:
        """A path of the file as PtyRAD reads it: relative to the working directory."""
        if not isinstance(value, (str, os.PathLike)):
            self.fail(name, f"expected a file path, got {value!r}")
        text = os.fspath(value)
        if os.path.isabs(text):
            return text
        out = os.path.normpath(os.path.join(self.cwd, text))
        self.note(name, f"relative path {text!r} taken from the working directory, as PtyRAD does: {out}")
        return out


class Node:
    """The value of one PtyRAD model as the file gives it, with PtyRAD's defaults behind it."""

    def __init__(self, tr: Translation, model: str, given: dict, prefix: str):
        self.tr, self.model, self.given, self.prefix = tr, model, given, prefix
        self.fields = D.MODELS[model]["fields"]
        unknown = [k for k in given if k not in self.fields]
        if unknown and D.MODELS[model]["extra"] == "forbid":
            tr.fail(
                self.name(unknown[0]),
                f"not a PtyRAD {D.PTYRAD_VERSION} option (PtyRAD rejects it too); "
                f"valid here: {', '.join(self.fields)}",
            )
        if unknown:
            tr.note(
                [self.name(k) for k in unknown],
                "not a PtyRAD option here; PtyRAD ignores it and so does the translation",
            )

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        return key in self.given

    def get(self, key: str, mark: bool = True):
        """The value PtyRAD uses: the file's, else PtyRAD's default. ``mark``: it is carried over."""
        if key in self.given:
            if mark:
                self.tr.mapped.add(self.name(key))
            return self.given[key]
        default = self.fields[key]["default"]
        if default == D.REQUIRED:
            self.tr.fail(self.name(key), f"required by PtyRAD {D.PTYRAD_VERSION} and missing")
        return {} if default == D.MODEL_DEFAULTS else copy.deepcopy(default)

    def child(self, key: str, model: str | None = None) -> Node | None:
        """The nested model at ``key`` (``None`` if its value is null)."""
        value = self.get(key, mark=False)
        if value is None:
            if key in self.given:
                self.tr.mapped.add(self.name(key))
            return None
        if not isinstance(value, dict):
            self.tr.fail(self.name(key), f"expected a mapping, got {value!r}")
        if key in self.given and not value:
            self.tr.mapped.add(self.name(key))
        return Node(self.tr, model or self.fields[key]["models"][0], value, self.name(key))

    def flags(self, key: str, names: tuple[str, ...]) -> dict[str, bool] | None:
        """A PtyRAD list of 0 / 1 switches (``meas_flipT: [ud, lr, T]``) as ``{name: bool}``;
        ``None`` when absent or all off. Another length or another value (``'yes'``, 2) fails,
        naming the key: a silent ``bool()`` would read any non-empty text as on."""
        value = self.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, (list, tuple))
            or len(value) != len(names)
            or any(v not in (0, 1) or isinstance(v, float) for v in value)
        ):
            self.fail(
                key, f"expected a list of {len(names)} switches, 0 or 1 ({', '.join(names)}), got {value!r}"
            )
        return dict(zip(names, map(bool, value))) if any(value) else None

    def note(self, key: str, text: str) -> None:
        self.tr.note(self.name(key), text)

    def fail(self, key: str, text: str):
        self.tr.fail(self.name(key), text)

    def default_used(self, *keys: str) -> None:
        self.tr.defaults += [self.name(k) for k in keys if k not in self.given]


def leaves(value, prefix: str = ""):
    """Dotted names of the leaf options of a params dict (an empty mapping is a leaf)."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from leaves(sub, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix


def covered(name: str, names: set[str]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1))


def normalise(tr: Translation, params: dict) -> dict:
    """PtyRAD's parser: legacy spellings migrated, deprecated keys dropped (``ptyrad.params.parser``)."""
    for section in list(params):
        if section in SECTIONS and params[section] is None:
            del params[section]
            tr.note(section, "empty section: PtyRAD's defaults used")
    init = params.get("init_params")
    if isinstance(init, dict):
        aberrations = init.get("probe_aberrations")
        aberrations = dict(aberrations) if isinstance(aberrations, dict) else {}
        for legacy, (modern, blocking) in LEGACY_ABERRATIONS.items():
            if legacy in init:
                value = init.pop(legacy)
                if any(k in aberrations for k in blocking):
                    tr.note(
                        f"init_params.{legacy}",
                        f"ignored, as PtyRAD does: probe_aberrations already sets {modern}",
                    )
                else:
                    aberrations[modern] = value
                    tr.mapped.add(f"init_params.{legacy}")
                    tr.notes.append(
                        f"init_params.{legacy}: PtyRAD's pre-0.1.0b13 name, "
                        f"read as probe_aberrations.{modern}"
                    )
        if aberrations or "probe_aberrations" in init:
            init["probe_aberrations"] = aberrations
    model = params.get("model_params")
    if isinstance(model, dict) and "obj_preblur_std" in model:
        model.pop("obj_preblur_std")
        tr.note(
            "model_params.obj_preblur_std",
            "deprecated and ignored by PtyRAD 1.0, so not applied "
            "(ptyrad_core's equivalent is the forward extension object_blur)",
        )
    recon = params.get("recon_params")
    if isinstance(recon, dict) and "if_quiet" in recon:
        recon.pop("if_quiet")
        tr.note("recon_params.if_quiet", "deprecated and ignored by PtyRAD 1.0 (use run --quiet)")
    constraints = params.get("constraint_params")
    if isinstance(constraints, dict):
        for name, spec in constraints.items():
            if not isinstance(spec, dict):
                tr.fail(f"constraint_params.{name}", f"expected a mapping, got {spec!r}")
            freq = spec.pop("freq", None)
            if freq is not None:
                tr.mapped.add(f"constraint_params.{name}.freq")
                tr.notes.append(
                    f"constraint_params.{name}.freq: PtyRAD's pre-0.1.0b11 name, read as step "
                    "(start_iter 1 unless given), as PtyRAD does"
                )
            elif "freq" in (tr.raw.get("constraint_params") or {}).get(name, {}):
                tr.mapped.add(f"constraint_params.{name}.freq")
            if "start_iter" not in spec and freq is None:
                tr.note(
                    f"constraint_params.{name}",
                    "no start_iter, which PtyRAD reads as null: off (its other options are inert)",
                )
            spec.setdefault("start_iter", 1 if freq is not None else None)
            spec.setdefault("step", freq if freq is not None else 1)
            spec.setdefault("end_iter", None)
    return params
