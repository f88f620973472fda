"""Electron optics: wavelength, aberration function, probe synthesis and probe modes.

Conventions (docs/conventions.md):

- Lengths in Angstrom, angles in mrad unless named ``*_deg``, energies in kV.
- Aberrations in Krivanek notation, ``chi(k) = (2 pi / lambda) sum_nm C_nm alpha^(n+1) /
  (n+1) cos(m (phi - phi_nm))`` with ``alpha = lambda |k|`` and ``phi = atan2(ky, kx)``.
  ``C10 = -defocus``: a positive defocus is an underfocus (abTEM and PtyRAD convention).
- The probe is ``fftshift(ifft2(A(k) exp(-i chi(k))))``, centred at pixel (N/2, N/2) of its
  window, normalised to ``sum |probe|^2 = 1`` before any intensity scaling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from ptyrad_core.kernel.errors import ConfigError

HC_KEV_A = 12.398419843320026  # h c in keV * Angstrom
ELECTRON_REST_KEV = 510.99895000  # m0 c^2 in keV


def electron_wavelength(energy_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom for an acceleration voltage in kV."""
    if not energy_kv > 0:
        raise ConfigError(f"energy_kV must be positive, got {energy_kv}")
    return HC_KEV_A / math.sqrt(energy_kv * (2.0 * ELECTRON_REST_KEV + energy_kv))


# Haider name -> ((n, m), factor) with Haider value = factor * Krivanek value.
_HAIDER = {
    "C1": ((1, 0), 1.0),
    "A1": ((1, 2), 1.0),
    "B2": ((2, 1), 1 / 3),
    "A2": ((2, 3), 1.0),
    "C3": ((3, 0), 1.0),
    "S3": ((3, 2), 1 / 4),
    "A3": ((3, 4), 1.0),
    "B4": ((4, 1), 1 / 4),
    "D4": ((4, 3), 1 / 4),
    "A4": ((4, 5), 1.0),
    "C5": ((5, 0), 1.0),
    "S5": ((5, 2), 1 / 6),
    "R5": ((5, 4), 1 / 6),
    "A5": ((5, 6), 1.0),
}
# alias -> (Krivanek key, factor)
_ALIASES = {"defocus": ("C10", -1.0), "df": ("C10", -1.0), "Cs": ("C30", 1.0)}
_KRIVANEK = re.compile(r"^(C|phi)(\d)(\d)(a|b)?$")


def _valid_order(n: int, m: int) -> bool:
    return 1 <= n <= 5 and 0 <= m <= n + 1 and (n + m) % 2 == 1


def parse_aberrations(raw: Mapping[str, float] | None) -> dict[tuple[int, int], tuple[float, float]]:
    """Normalise aberration coefficients to Krivanek Cartesian form ``{(n, m): (a, b)}`` in Angstrom.

    Accepted keys (mixable): Krivanek polar ``C{n}{m}`` with angle ``phi{n}{m}`` in degrees;
    Krivanek Cartesian ``C{n}{m}a`` / ``C{n}{m}b``; Haider ``C1, A1, B2, A2, C3, S3, A3, B4, D4,
    A4, C5, S5, R5, A5`` with angles ``A1phi`` etc.; aliases ``defocus`` / ``df`` (= -C10) and
    ``Cs`` (= C30). Round aberrations (m = 0) have only ``a``.
    """
    polar: dict[tuple[int, int], dict[str, float]] = {}
    cart: dict[tuple[int, int], dict[str, float]] = {}

    def put(store, nm, part, value, key):
        if part in store.setdefault(nm, {}):
            raise ConfigError(f"aberration {key!r} sets C{nm[0]}{nm[1]} twice")
        store[nm][part] = float(value)

    for key, value in (raw or {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(
                f"aberration {key!r} must be a finite number (Angstrom or degrees), got {value!r}"
            )
        name, factor = _ALIASES.get(key, (key, 1.0))
        if name.endswith("phi") and name[:-3] in _HAIDER:
            nm, _ = _HAIDER[name[:-3]]
            if nm[1] == 0:
                raise ConfigError(f"aberration {key!r}: a round aberration has no angle")
            put(polar, nm, "phi", value, key)
            continue
        if name in _HAIDER:
            nm, h = _HAIDER[name]
            put(polar, nm, "mag", value / h, key)
            continue
        match = _KRIVANEK.match(name)
        if not match:
            raise ConfigError(
                f"unknown aberration {key!r}: expected Krivanek (C10, C12, phi12, C12a, C12b, ...), "
                f"Haider (C1, A1, A1phi, B2, C3, ...) or an alias (defocus, df, Cs)"
            )
        kind, n, m, part = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
        if not _valid_order(n, m):
            raise ConfigError(
                f"aberration {key!r}: order (n={n}, m={m}) does not exist (n+m must be odd, m <= n+1)"
            )
        if m == 0 and (kind == "phi" or part):
            raise ConfigError(f"aberration {key!r}: round aberration C{n}0 is a single number")
        if kind == "phi":
            put(polar, (n, m), "phi", value, key)
        elif part:
            put(cart, (n, m), part, value * factor, key)
        else:
            put(polar, (n, m), "mag", value * factor, key)

    out: dict[tuple[int, int], tuple[float, float]] = {}
    for nm in set(polar) | set(cart):
        if nm in polar and nm in cart:
            raise ConfigError(f"aberration C{nm[0]}{nm[1]} given both in polar and Cartesian form")
        if nm in polar:
            mag, phi = polar[nm].get("mag", 0.0), math.radians(polar[nm].get("phi", 0.0))
            out[nm] = (mag * math.cos(nm[1] * phi), mag * math.sin(nm[1] * phi))
        else:
            out[nm] = (cart[nm].get("a", 0.0), cart[nm].get("b", 0.0))
    return out


def aberration_phase(kx: np.ndarray, ky: np.ndarray, wavelength: float, aberrations: Mapping) -> np.ndarray:
    """chi(k) in radians on a spatial-frequency grid (1/Angstrom), Krivanek notation.

    ``aberrations`` is anything :func:`parse_aberrations` accepts.
    """
    coeffs = parse_aberrations(aberrations)
    ax, ay = kx * wavelength, ky * wavelength
    alpha2 = ax**2 + ay**2
    z = ax + 1j * ay
    chi = np.zeros_like(alpha2)
    for (n, m), (a, b) in coeffs.items():
        zm = z**m  # alpha^m (cos m phi + i sin m phi)
        chi += alpha2 ** ((n + 1 - m) / 2) * (a * zm.real + b * zm.imag) / (n + 1)
    return 2 * np.pi / wavelength * chi


def make_probe(
    npix: int,
    dx: float,
    energy_kv: float,
    conv_angle_mrad: float,
    aberrations: Mapping | None = None,
    npix_x: int | None = None,
) -> np.ndarray:
    """Convergent-beam probe in real space, complex128 ``(npix, npix_x)``, sum |probe|^2 = 1.

    The aperture is a hard disk ``lambda |k| <= conv_angle``; the probe is centred at pixel
    ``(npix // 2, npix_x // 2)`` of the window, the pixel that ``fftshift`` puts zero at.
    """
    npix_x = npix if npix_x is None else npix_x
    if conv_angle_mrad <= 0:
        raise ConfigError(f"conv_angle_mrad must be positive, got {conv_angle_mrad}")
    wavelength = electron_wavelength(energy_kv)
    ky = np.fft.fftfreq(npix, dx)[:, None]
    kx = np.fft.fftfreq(npix_x, dx)[None, :]
    kx, ky = np.broadcast_arrays(kx, ky)
    aperture = (wavelength * np.hypot(kx, ky) <= conv_angle_mrad * 1e-3).astype(float)
    chi = aberration_phase(kx, ky, wavelength, aberrations or {})
    probe = np.fft.fftshift(np.fft.ifft2(aperture * np.exp(-1j * chi)))
    norm = np.sqrt(np.sum(np.abs(probe) ** 2))
    if norm == 0:
        raise ConfigError(
            f"the probe aperture ({conv_angle_mrad} mrad) holds no pixel of the {npix} x {npix_x} "
            f"Fourier grid: the detector sampling (dx = {dx} A) is too coarse"
        )
    return probe / norm


def orthogonalize_modes(modes: np.ndarray) -> np.ndarray:
    """Orthogonalise mixed-state modes ``(M, ...)`` by eigendecomposition of their Gram matrix.

    Total intensity is preserved; modes come out sorted by power, strongest first.
    """
    flat = modes.reshape(modes.shape[0], -1).astype(np.complex128)
    gram = flat @ flat.conj().T
    _, vecs = np.linalg.eigh(0.5 * (gram + gram.conj().T))
    ortho = vecs.conj().T @ flat
    order = np.argsort(-np.sum(np.abs(ortho) ** 2, axis=1))
    return ortho[order].reshape(modes.shape).astype(modes.dtype)


def make_mixed_probe(probe: np.ndarray, n_modes: int, mode_power) -> np.ndarray:
    """Mixed-state probe ``(n_modes, Ny, Nx)`` from a single mode.

    Extra modes are Hermite-like: the fundamental mode times ``x^i y^j`` and a Gaussian of the
    probe's own width, orthogonalised against the earlier ones (as PtychoShelves and PtyRAD do).
    Extra mode ``i`` carries ``mode_power`` (or ``mode_power[i - 1]``, the last value repeating)
    of the total intensity, the first mode the rest; the total intensity equals that of ``probe``.
    """
    if n_modes < 1:
        raise ConfigError(f"probe modes must be >= 1, got {n_modes}")
    if n_modes == 1:
        return probe[None].copy()
    listed = list(mode_power) if isinstance(mode_power, (list, tuple, np.ndarray)) else [mode_power]
    extra = np.array([listed[min(i, len(listed) - 1)] for i in range(n_modes - 1)], dtype=float)
    if not (np.all(extra > 0) and extra.sum() < 1):
        raise ConfigError(
            f"probe mode_power {listed} for {n_modes - 1} extra modes must be positive and sum below 1: "
            "the first mode keeps the remaining power"
        )
    ny, nx = probe.shape
    y, x = np.meshgrid(np.arange(ny) - ny / 2, np.arange(nx) - nx / 2, indexing="ij")
    w = np.abs(probe) ** 2
    w = w / w.sum()
    cy, cx = (y * w).sum(), (x * w).sum()
    vy, vx = ((y - cy) ** 2 * w).sum(), ((x - cx) ** 2 * w).sum()
    envelope = np.exp(-((x - cx) ** 2) / (2 * vx) - (y - cy) ** 2 / (2 * vy))
    order = math.ceil(math.sqrt(n_modes))
    basis: list[np.ndarray] = []
    for j in range(order):
        for i in range(order):
            mode = probe * ((x - cx) ** i) * ((y - cy) ** j)
            if basis:
                mode = mode * envelope
            for b in basis:
                mode = mode - np.vdot(b, mode) * b
            basis.append(mode / np.linalg.norm(mode))
    modes = np.stack(basis[:n_modes])
    powers = np.concatenate([[1 - extra.sum()], extra])
    total = np.sum(np.abs(probe) ** 2)
    return modes * np.sqrt(powers * total)[:, None, None]
