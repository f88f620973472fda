"""``init_params``: the experiment (beam energy, convergence angle, aberrations) and the calibration."""

from __future__ import annotations

import math

from .params import Node, Translation
from .tables import ALIASES, CALIBRATION, HAIDER, XRAY


def _cartesian_aberrations(cfg: dict) -> None:
    """Rewrite the translated aberrations as Krivanek Cartesian keys (C10, C12a, C12b, ...).

    The input is :func:`aberrations`' canonical polar form (``C{n}{m}`` in Angstrom,
    ``phi{n}{m}`` in degrees), or already Cartesian from an earlier call:
    ``C{n}{m}a = C cos(m phi)``, ``C{n}{m}b = C sin(m phi)``; round ones (m = 0) stay ``C{n}0``.
    """
    current = cfg["experiment"].get("aberrations") or {}
    out = {}
    for key, value in current.items():
        if key.startswith("phi"):
            continue
        if key.endswith(("a", "b")) or key.endswith("0"):
            out[key] = value
            continue
        n, m = int(key[1]), int(key[2:])
        phi = math.radians(current.get(f"phi{n}{m}", 0.0))
        out[f"C{n}{m}a"], out[f"C{n}{m}b"] = value * math.cos(m * phi), value * math.sin(m * phi)
    cfg["experiment"]["aberrations"] = out


def experiment(tr: Translation, init: Node) -> None:
    illum = init.get("probe_illum_type")
    if illum != "electron":
        init.fail("probe_illum_type", f"{illum!r}: only electron ptychography is available in ptyrad_core")
    xray = [init.name(k) for k in XRAY if init.given.get(k) is not None]
    given_xray = [init.name(k) for k in XRAY if k in init.given and init.given[k] is None]
    if xray:
        tr.note(xray, "x-ray probe options, ignored for an electron probe (as PtyRAD does)")
    tr.mapped.update(given_xray)
    exp: dict = {}
    for key, field in (("probe_kv", "energy_kV"), ("probe_conv_angle", "conv_angle_mrad")):
        value = init.get(key)
        if value is None:
            init.fail(key, "required for an electron probe")
        exp[field] = value
    exp["aberrations"] = aberrations(tr, init)
    cal = init.child("meas_calibration")
    if cal is None:
        init.fail("meas_calibration", "null is not accepted by PtyRAD 1.0 (default: {mode: fitRBF})")
    mode, value = cal.get("mode"), cal.get("value")
    init.default_used("meas_calibration")
    if mode == "fitRBF":
        exp["fit_rbf"] = True
        if value is not None:
            cal.note("value", f"{value} is not used with mode fitRBF (PtyRAD ignores it too)")
    elif mode in CALIBRATION:
        if value is None:
            cal.fail("value", f"mode {mode!r} needs a value")
        exp[CALIBRATION[mode]] = value
    else:
        cal.fail("mode", f"unknown calibration mode {mode!r}")
    tr.config["experiment"] = exp


def aberrations(tr: Translation, init: Node) -> dict:
    """PtyRAD's canonical form: Krivanek polar ``C{n}{m}`` / ``phi{n}{m}``, rounded to 3 decimals."""
    raw = init.get("probe_aberrations") or {}
    name = init.name("probe_aberrations")
    if not isinstance(raw, dict):
        tr.fail(name, f"expected a mapping of aberration coefficients, got {raw!r}")
    store: dict[tuple[int, int], dict[str, float]] = {}
    for key, value in raw.items():
        where = f"{name}.{key}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            tr.fail(where, f"must be a finite number (Angstrom or degrees), got {value!r}")
        nm, part, scale = parse_aberration(tr, where, str(key))
        if nm[0] > 5:
            tr.fail(where, "ptyrad_core's probe takes aberrations up to 5th order")
        if part in store.setdefault(nm, {}):
            tr.fail(where, f"sets C{nm[0]}{nm[1]} twice (PtyRAD rejects it too)")
        store[nm][part] = float(value) * scale
    out: dict[str, float] = {}
    for (n, m), parts in sorted(store.items()):
        if ("mag" in parts or "phi" in parts) and ("a" in parts or "b" in parts):
            tr.fail(name, f"C{n}{m} is given both in polar and Cartesian form (PtyRAD rejects it too)")
        if "a" in parts or "b" in parts:
            a, b = parts.get("a", 0.0), parts.get("b", 0.0)
            mag = math.hypot(a, b)
            phi = math.degrees(math.atan2(b, a) / m) if mag and m else 0.0
        else:
            mag, phi = parts.get("mag", 0.0), parts.get("phi", 0.0)
        if mag == 0:
            continue
        out[f"C{n}{m}"] = round(mag, 3)
        if m:
            out[f"phi{n}{m}"] = round(phi, 3)
    for key in raw:
        tr.mapped.add(f"{name}.{key}")
    if not raw and init.has("probe_aberrations"):
        tr.mapped.add(name)
    return out


def parse_aberration(tr: Translation, where: str, key: str) -> tuple[tuple[int, int], str, float]:
    """PtyRAD's ``Aberrations._parse_external_key``.

    Returns ((n, m), 'mag' / 'phi' / 'a' / 'b', the scale to Krivanek's convention).
    """
    scale = 1.0
    if key in ALIASES:
        key, scale = ALIASES[key]
    elif key in HAIDER:
        nm, h = HAIDER[key]
        return nm, "mag", 1 / h
    elif key.endswith("phi") and key[:-3] in HAIDER:
        nm = HAIDER[key[:-3]][0]
        if nm[1] == 0:
            tr.fail(where, "a round aberration has no angle")
        return nm, "phi", 1.0
    if key.startswith("phi"):
        nm = order(tr, where, key[3:])
        if nm[1] == 0:
            tr.fail(where, "a round aberration has no angle")
        return nm, "phi", 1.0
    if key.startswith("C"):
        body, part = key[1:], "mag"
        if body.endswith(("a", "b")):
            body, part = body[:-1], body[-1]
        nm = order(tr, where, body)
        if nm[1] == 0 and part != "mag":
            tr.fail(where, f"round aberration C{nm[0]}0 is a single number")
        return nm, part, scale
    tr.fail(
        where,
        "unknown aberration name: expected Krivanek (C10, C12, phi12, C12a, ...), Haider (C1, A1, "
        "A1phi, B2, ...) or defocus / Cs",
    )


def order(tr: Translation, where: str, text: str) -> tuple[int, int]:
    if len(text) >= 2 and text.isdigit():
        n, m = int(text[0]), int(text[1:])
        if n >= 1 and 0 <= m <= n + 1 and m % 2 == (0 if n % 2 == 1 else 1):
            return n, m
    tr.fail(where, f"invalid aberration order {text!r}")
