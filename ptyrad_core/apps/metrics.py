"""Quality metrics against ground truth, and between reconstructions.

The projected phase of a reconstruction is the occupancy-weighted mean over object modes of the
sum over slices. Ptychography fixes the phase only up to a constant, so the error removes each
image's mean over the compared region before comparing (:func:`phase_error`); it also fixes the
object only up to a translation, which :func:`registered_phase_error` removes first with a
sub-pixel registration (:func:`register_shift`, the matrix-multiply DFT method of
Guizar-Sicairos et al.). :func:`frc` is the Fourier ring correlation of two reconstructions of
the same object, and :func:`frc_command` its command-line form (``ptyrad-core frc A B``).

Shift convention everywhere: ``(dy, dx)`` in pixels, positive values move content down and
right (:func:`fourier_shift`, as :func:`ptyrad_core.kernel.forward.shift_ramps`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptyrad_core.setup.scan import scanned_region  # lives beside the scan positions; importable here too


def projected_phase(phase: np.ndarray, occupancy: np.ndarray | None = None) -> np.ndarray:
    """``(omode, Nz, NY, NX)`` phase -> ``(NY, NX)`` projected phase (radians)."""
    phase = np.asarray(phase, dtype=np.float64)
    occ = np.full(phase.shape[0], 1.0 / phase.shape[0]) if occupancy is None else np.asarray(occupancy, float)
    return np.tensordot(occ / occ.sum(), phase.sum(axis=1), axes=1)


def phase_error(recon: np.ndarray, truth: np.ndarray, region: tuple[slice, slice]) -> float:
    """Relative RMS error ``||r - t|| / ||t||`` over ``region`` after removing each image's mean there."""
    r = np.asarray(recon, dtype=np.float64)[region]
    t = np.asarray(truth, dtype=np.float64)[region]
    if r.shape != t.shape or r.size == 0:
        raise ValueError(f"phase_error: region gives shapes {r.shape} (reconstruction) and {t.shape} (truth)")
    r = r - r.mean()
    t = t - t.mean()
    return float(np.linalg.norm(r - t) / np.linalg.norm(t))


# --------------------------------------------------------------------------------------------
# sub-pixel registration
# --------------------------------------------------------------------------------------------


def fourier_shift(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``image`` translated by ``shift = (dy, dx)`` pixels with a Fourier phase ramp (circular).

    Positive ``dy`` moves the content down (towards larger row index), positive ``dx`` to the
    right: the convention of :func:`ptyrad_core.kernel.forward.shift_ramps`. A real image stays real.
    """
    image = np.asarray(image)
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.fftfreq(image.shape[1])[None, :]
    shifted = np.fft.ifft2(np.fft.fft2(image) * np.exp(-2j * np.pi * (shift[0] * fy + shift[1] * fx)))
    return shifted if np.iscomplexobj(image) else shifted.real


def taper_window(shape: tuple[int, int], kind: str | None = "tukey", alpha: float = 0.25) -> np.ndarray:
    """A separable 2-D apodisation window that goes smoothly to zero at the image edges.

    - ``"hann"``: ``sin^2(pi (i + 0.5) / N)`` along each axis (tapers the whole image);
    - ``"tukey"``: flat (1) in the middle, a cosine (Hann) taper over the outer ``alpha / 2`` of
      the width on each side (``alpha = 1`` is the Hann window, ``alpha = 0`` no taper);
    - ``None``: all ones.
    """

    def one(n: int) -> np.ndarray:
        t = (np.arange(n) + 0.5) / n  # pixel centres in (0, 1)
        if kind == "hann":
            return np.sin(np.pi * t) ** 2
        if kind == "tukey":
            if alpha <= 0:
                return np.ones(n)
            edge = np.minimum(t, 1 - t)  # distance to the nearer edge, fraction of n
            w = np.ones(n)
            inner = edge < alpha / 2
            w[inner] = np.sin(np.pi * edge[inner] / alpha) ** 2
            return w
        raise ValueError(f"window must be 'hann', 'tukey' or None, got {kind!r}")

    if kind is None:
        return np.ones(shape)
    return one(shape[0])[:, None] * one(shape[1])[None, :]


def _upsampled_correlation(
    product: np.ndarray, centre: np.ndarray, upsample: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse DFT of ``product`` on a ``size x size`` grid of spacing ``1 / upsample`` pixel
    centred on ``centre`` (pixels), by two matrix products (Guizar-Sicairos et al. 2008)."""
    ny, nx = product.shape
    ys = centre[0] + (np.arange(size) - size // 2) / upsample
    xs = centre[1] + (np.arange(size) - size // 2) / upsample
    ker_y = np.exp(2j * np.pi * ys[:, None] * np.fft.fftfreq(ny)[None, :])  # (size, ny)
    ker_x = np.exp(2j * np.pi * np.fft.fftfreq(nx)[:, None] * xs[None, :])  # (nx, size)
    return ker_y @ product @ ker_x, ys, xs


def register_shift(
    reference: np.ndarray,
    image: np.ndarray,
    upsample: int = 20,
    normalization: str | None = "phase",
) -> tuple[float, float]:
    """Sub-pixel translation ``(dy, dx)`` of ``image`` relative to ``reference``, in pixels.

    Sign convention: ``image ~= fourier_shift(reference, (dy, dx))``, i.e. the content of
    ``image`` sits ``dy`` rows lower and ``dx`` columns further right than in ``reference``;
    ``fourier_shift(image, (-dy, -dx))`` registers ``image`` onto ``reference``.

    Method (Guizar-Sicairos, Thurman and Fienup, Opt. Lett. 33, 156 (2008)): the peak of the
    cross-correlation ``ifft2(F[image] conj(F[reference]))`` (normalised to unit magnitude for
    ``normalization="phase"``, i.e. phase correlation; ``None`` for the plain
    cross-correlation, more robust to noise dominating high frequencies) is found to the nearest
    pixel, then refined on a grid ``1 / upsample`` pixel fine over +-0.75 pixel around it, the
    upsampled correlation computed by a matrix-multiply DFT of just that neighbourhood; a
    parabola through the largest upsampled value and its neighbours along each axis places the
    peak between grid points. The error is below ``1 / (2 upsample)`` pixel (typically far
    below) plus what noise allows. Images are treated as
    periodic: remove a background or taper the edges (:func:`taper_window`) of non-periodic
    images first. Complex images are accepted.
    """
    ref = np.asarray(reference)
    img = np.asarray(image)
    if ref.shape != img.shape or ref.ndim != 2:
        raise ValueError(
            f"register_shift: images must be 2-D of the same shape, got {ref.shape} and {img.shape}"
        )
    if upsample < 1:
        raise ValueError(f"register_shift: upsample must be >= 1, got {upsample}")
    product = np.fft.fft2(img) * np.conj(np.fft.fft2(ref))
    if normalization == "phase":
        mag = np.abs(product)
        product = product / np.maximum(mag, 1e-12 * mag.max() + np.finfo(float).tiny)
    elif normalization is not None:
        raise ValueError(f"register_shift: normalization must be 'phase' or None, got {normalization!r}")
    corr = np.abs(np.fft.ifft2(product))
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape), dtype=float)
    shape = np.array(corr.shape)
    peak = np.where(peak > shape // 2, peak - shape, peak)  # wrap into [-N/2, N/2]
    if upsample > 1:
        size = int(np.ceil(1.5 * upsample)) | 1  # odd, so the coarse peak is a grid point
        up, ys, xs = _upsampled_correlation(product, peak, upsample, size)
        mag = np.abs(up)
        iy, ix = np.unravel_index(np.argmax(mag), mag.shape)
        peak = np.array(
            [
                ys[iy] + _vertex(mag[iy - 1 : iy + 2, ix]) / upsample,
                xs[ix] + _vertex(mag[iy, ix - 1 : ix + 2]) / upsample,
            ]
        )
    return float(peak[0]), float(peak[1])


def _vertex(three: np.ndarray) -> float:
    """Offset (in samples, within +-0.5) of the vertex of the parabola through three samples
    around a maximum; 0 at the edge of the upsampled grid."""
    if three.shape != (3,):
        return 0.0
    curvature = three[0] - 2 * three[1] + three[2]
    if curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (three[0] - three[2]) / curvature, -0.5, 0.5))


def _valid_after_shift(shape: tuple[int, int], shift: tuple[float, float]) -> tuple[slice, slice]:
    """The central box unaffected by the wrap-around of a circular shift by ``shift``, with one
    pixel to spare for the ringing of a sub-pixel shift."""
    out = []
    for n, s in zip(shape, shift):
        m = int(np.ceil(abs(s))) + 1
        out.append(slice(m, n - m))
    return tuple(out)


def _intersect(a: tuple[slice, slice], b: tuple[slice, slice], shape) -> tuple[slice, slice]:
    out = []
    for sa, sb, n in zip(a, b, shape):
        a0, a1, _ = sa.indices(n)
        b0, b1, _ = sb.indices(n)
        out.append(slice(max(a0, b0), min(a1, b1)))
    return tuple(out)


def registered_phase_error(
    recon: np.ndarray,
    truth: np.ndarray,
    region: tuple[slice, slice] | None = None,
    upsample: int = 20,
) -> tuple[float, tuple[float, float]]:
    """:func:`phase_error` after registering ``recon`` onto ``truth`` with a sub-pixel shift.

    The shift is measured by :func:`register_shift` (plain cross-correlation) on the compared
    region of both images (mean removed, Tukey-tapered edges): the illuminated part, where the
    reconstruction means something; the measurement is repeated on the shifted reconstruction
    until it converges, which removes the taper's pull towards zero shift. ``recon`` is then
    Fourier-shifted onto ``truth`` and the
    relative RMS error computed over ``region`` intersected with the part that the circular shift
    leaves valid (``region=None``: that central part alone), each image's mean removed there.

    :return: ``(error, (dy, dx))``, the shift of ``recon`` relative to ``truth`` in pixels
        (:func:`register_shift`'s convention; the reconstruction was moved by ``(-dy, -dx)``).
    """
    r = np.asarray(recon, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if r.shape != t.shape or r.ndim != 2:
        raise ValueError(
            f"registered_phase_error: images must be 2-D of the same shape, got {r.shape} and {t.shape}"
        )
    box = region if region is not None else (slice(None), slice(None))
    rr = r[box]
    if rr.size == 0:
        raise ValueError(f"registered_phase_error: region {region} is empty for images of shape {r.shape}")
    dy, dx = _register_region(t, r, box, upsample)
    moved = fourier_shift(r, (-dy, -dx))
    compare = _intersect(box, _valid_after_shift(r.shape, (dy, dx)), r.shape)
    return phase_error(moved, t, compare), (dy, dx)


def _register_region(
    reference: np.ndarray, image: np.ndarray, box: tuple[slice, slice], upsample: int, rounds: int = 4
) -> tuple[float, float]:
    """Shift of ``image`` relative to ``reference`` measured on the box only (mean removed,
    Tukey-tapered). The fixed taper pulls the estimate towards zero in proportion to the shift,
    so the measurement is repeated on the image moved by the estimate so far until the
    correction is below 1e-3 pixel: the bias shrinks geometrically."""
    t = reference[box]
    win = taper_window(t.shape, "tukey", 0.25)
    ref = (t - t.mean()) * win
    total = np.zeros(2)
    for _ in range(rounds):
        moved = fourier_shift(image, tuple(-total))[box] if total.any() else image[box]
        step = np.array(
            register_shift(ref, (moved - moved.mean()) * win, upsample=upsample, normalization=None)
        )
        total += step
        if np.abs(step).max() < 1e-3:
            break
    return float(total[0]), float(total[1])


# --------------------------------------------------------------------------------------------
# Fourier ring correlation
# --------------------------------------------------------------------------------------------


def half_bit_threshold(n_pixels: np.ndarray) -> np.ndarray:
    """The half-bit information threshold of van Heel and Schatz (J. Struct. Biol. 151, 250
    (2005)) for rings of ``n_pixels`` Fourier pixels."""
    s = np.sqrt(np.maximum(np.asarray(n_pixels, dtype=float), 1.0))
    return (0.2071 + 1.9102 / s) / (1.2071 + 0.9102 / s)


def frc(
    image_a: np.ndarray,
    image_b: np.ndarray,
    dx_A: float,
    *,
    register: bool = True,
    upsample: int = 20,
    window: str | None = "hann",
    alpha: float = 0.25,
    threshold: float = 1 / 7,
) -> dict:
    """Fourier ring correlation of two images of the same object (e.g. two reconstructions).

    ``image_b`` is first registered onto ``image_a`` (sub-pixel, :func:`register_shift` with
    the plain cross-correlation, Fourier shift of b) unless ``register=False``; then each image
    has its mean removed and is multiplied by the apodisation ``window`` (:func:`taper_window`),
    which suppresses the cross-shaped artefacts the periodic FFT makes at non-periodic edges:

    - ``"hann"`` (default) tapers the whole image; its spectrum is three Fourier pixels wide, so
      it moves signal by at most one ring (the resolution of a band-limited image comes out
      within a ring of its band limit);
    - ``"tukey"`` keeps the middle flat and tapers the outer ``alpha / 2`` of each side with a
      cosine: more of the field counts, but its spectrum has tails over several rings, which at
      high signal-to-noise ratios raise the FRC just beyond a sharp band limit;
    - ``None``: no window (only for periodic images).

    Rings are one Fourier pixel of the shorter side wide
    (``1 / (min(Ny, Nx) dx)``), up to the Nyquist frequency ``1 / (2 dx)``::

        FRC(k) = Re sum_ring A B* / sqrt(sum_ring |A|^2 sum_ring |B|^2)

    The resolution is ``1 / k`` at the first crossing (after the zero ring) of ``threshold``
    (default 1/7), linearly interpolated between rings; ``None`` if the curve never drops below.

    :return: dict with ``frequency_invA`` (ring centres, 1/Angstrom), ``frc``, ``half_bit`` (the
        half-bit threshold curve, for reference; it does not account for the window), ``n_pixels``
        per ring, ``threshold``, ``resolution_A`` and ``crossing_invA`` (at ``threshold``),
        ``resolution_half_bit_A`` (the same at the half-bit curve), ``window`` and ``shift_px``
        (the measured shift of b relative to a, or ``(0, 0)``).
    """
    a = np.asarray(image_a, dtype=np.float64)
    b = np.asarray(image_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"frc: images must be 2-D of the same shape, got {a.shape} and {b.shape}")
    if not dx_A > 0:
        raise ValueError(f"frc: dx_A must be positive, got {dx_A}")
    shift = (0.0, 0.0)
    if register:
        w = taper_window(a.shape, "tukey", 0.25)
        shift = register_shift((a - a.mean()) * w, (b - b.mean()) * w, upsample=upsample, normalization=None)
        b = fourier_shift(b, (-shift[0], -shift[1]))
    win = taper_window(a.shape, window, alpha)
    fa = np.fft.fft2((a - a.mean()) * win)
    fb = np.fft.fft2((b - b.mean()) * win)
    ny, nx = a.shape
    df = 1.0 / min(ny, nx)  # ring width, cycles per pixel
    f = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :])
    ring = np.rint(f / df).astype(np.int64).ravel()
    n_rings = int(np.floor(0.5 / df)) + 1
    keep = ring < n_rings
    ring = ring[keep]

    def ring_sum(values):
        return np.bincount(ring, weights=values.ravel()[keep], minlength=n_rings)

    cross = ring_sum((fa * np.conj(fb)).real)
    pa = ring_sum(np.abs(fa) ** 2)
    pb = ring_sum(np.abs(fb) ** 2)
    n_pix = np.bincount(ring, minlength=n_rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = cross / np.sqrt(pa * pb)
    curve = np.where(np.isfinite(curve), curve, 0.0)
    freq = np.arange(n_rings) * df / dx_A
    half_bit = half_bit_threshold(n_pix)
    crossing = _first_crossing(freq, curve, np.full(n_rings, float(threshold)))
    crossing_hb = _first_crossing(freq, curve, half_bit)
    return {
        "frequency_invA": freq,
        "frc": curve,
        "half_bit": half_bit,
        "n_pixels": n_pix,
        "threshold": float(threshold),
        "crossing_invA": crossing,
        "resolution_A": None if crossing is None else 1.0 / crossing,
        "resolution_half_bit_A": None if crossing_hb is None else 1.0 / crossing_hb,
        "window": window,
        "shift_px": (float(shift[0]), float(shift[1])),
    }


def _first_crossing(freq: np.ndarray, curve: np.ndarray, level: np.ndarray) -> float | None:
    """Frequency where ``curve`` first drops below ``level`` (after ring 0), interpolated."""
    gap = curve - level
    below = np.nonzero(gap[1:] < 0)[0]
    if not below.size:
        return None
    i = int(below[0]) + 1
    if i == 1:
        return float(freq[1])
    g0, g1 = gap[i - 1], gap[i]
    return float(freq[i - 1] + g0 / (g0 - g1) * (freq[i] - freq[i - 1]))


# --------------------------------------------------------------------------------------------
# command-line helpers
# --------------------------------------------------------------------------------------------


def load_projected_phase(path) -> dict:
    """The projected phase of a result file or of a dataset's ground truth, for comparisons.

    - a ptyrad_core result file (``format = ptyrad_core-result``): the occupancy-weighted
      projected phase of ``/object/phase``; the region is the box of the refined window centres;
    - a dataset in the shipped layout (data/README.md): ``/ground_truth/phase_projected``; the
      region is the box of the nominal window centres (window = pattern size).

    :return: dict with ``image`` (NY, NX), ``dx_A``, ``region`` (two slices), ``kind``.
    """
    import h5py

    from ptyrad_core.kernel.errors import DataError, one_line

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({one_line(exc)})") from None
    with f:
        if f.attrs.get("format") == "ptyrad_core-result":
            image = projected_phase(f["object/phase"][()], f["object/occupancy"][()])
            window = f["probe/modes"].shape[-2:]
            region = scanned_region(f["positions/refined_px"][()], window)
            return {"image": image, "dx_A": float(f.attrs["dx_A"]), "region": region, "kind": "result"}
        if "ground_truth/phase_projected" in f and "dx_A" in f.attrs:
            image = np.asarray(f["ground_truth/phase_projected"][()], dtype=np.float64)
            region = (slice(None), slice(None))
            if "positions_nominal_px" in f and "measurements" in f:
                region = scanned_region(f["positions_nominal_px"][()], f["measurements"].shape[-2:])
            return {"image": image, "dx_A": float(f.attrs["dx_A"]), "region": region, "kind": "ground truth"}
    raise DataError(
        f"{path}: neither a ptyrad_core result file nor a dataset with /ground_truth/phase_projected"
    )


def _common_region(shape_a, region_a, shape_b, region_b) -> tuple[slice, slice]:
    shape = (min(shape_a[0], shape_b[0]), min(shape_a[1], shape_b[1]))
    box = _intersect(_intersect(region_a, region_b, shape), (slice(0, shape[0]), slice(0, shape[1])), shape)
    return box


#: the Software (PNG) / Creator (PDF, SVG, EPS) metadata of an frc plot: how ``frc -o`` knows its own file
FRC_PLOT_MARK = "ptyrad-core frc"


def frc_command(
    path_a,
    path_b,
    out=None,
    *,
    window: str | None = "hann",
    threshold: float = 1 / 7,
    console=None,
    overwrite: bool = False,
) -> dict:
    """``ptyrad-core frc A B [-o PLOT.png]``: Fourier ring correlation of two projected phases.

    ``A`` and ``B`` are result files (or a dataset with ground truth, :func:`load_projected_phase`).
    Both images are cut to the common scanned region, ``B`` is registered onto ``A`` and
    :func:`frc` is computed. Prints the resolution (Angstrom) at ``threshold`` and at the
    half-bit curve; with ``out`` writes a PNG plot of the curves if matplotlib is installed
    (otherwise says so and skips it). ``out`` is checked first: never ``A`` or ``B``; an existing
    file only if it is a previous frc plot (its Software / Creator metadata is
    :data:`FRC_PLOT_MARK`) or with ``overwrite``. Returns :func:`frc`'s dict plus ``files``, ``region`` and
    ``plot`` (the PNG path or ``None``).
    """
    from rich.console import Console
    from rich.table import Table

    from ptyrad_core.kernel.errors import DataError

    console = console or Console()
    if out is not None:  # before any work: never an input, never another program's file
        from ptyrad_core.engine.outputs import check_new_file
        from ptyrad_core.setup.readonly import has_marker

        check_new_file(
            out,
            "-o",
            inputs=[path_a, path_b],
            overwrite=overwrite,
            is_previous_output=lambda p: has_marker(p, FRC_PLOT_MARK.encode()),
            kind="frc plot",
        )
    a, b = load_projected_phase(path_a), load_projected_phase(path_b)
    if not np.isclose(a["dx_A"], b["dx_A"], rtol=1e-6):
        raise DataError(
            f"frc: pixel sizes differ: {path_a} has dx = {a['dx_A']} A, {path_b} has {b['dx_A']} A"
        )
    box = _common_region(a["image"].shape, a["region"], b["image"].shape, b["region"])
    img_a, img_b = a["image"][box], b["image"][box]
    if min(img_a.shape) < 8:
        raise DataError(
            f"frc: the common scanned region {img_a.shape} of {path_a} and {path_b} is too small (< 8 px)"
        )
    result = frc(img_a, img_b, a["dx_A"], window=window, threshold=threshold)
    result["files"] = (str(path_a), str(path_b))
    result["region"] = ((box[0].start, box[0].stop), (box[1].start, box[1].stop))
    result["plot"] = None

    def fmt(v):
        return "not reached" if v is None else f"{v:.3f} A"

    table = Table(title="Fourier ring correlation", show_header=False)
    table.add_column("quantity")
    table.add_column("value")
    table.add_row("A", f"{path_a} ({a['kind']})")
    table.add_row("B", f"{path_b} ({b['kind']})")
    table.add_row(
        "region",
        f"rows {box[0].start}:{box[0].stop}, columns {box[1].start}:{box[1].stop} "
        f"({img_a.shape[0]} x {img_a.shape[1]} px), dx = {a['dx_A']:.5g} A",
    )
    table.add_row("shift of B", f"({result['shift_px'][0]:+.3f}, {result['shift_px'][1]:+.3f}) px")
    table.add_row("window", str(window))
    table.add_row(f"resolution (FRC = {threshold:.4g})", fmt(result["resolution_A"]))
    table.add_row("resolution (half-bit)", fmt(result["resolution_half_bit_A"]))
    console.print(table)
    if out is not None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            console.print("matplotlib is not installed: no plot written")
            return result
        fig, ax = plt.subplots(figsize=(6, 4))
        k = result["frequency_invA"]
        ax.plot(k[1:], result["frc"][1:], label="FRC")
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"{threshold:.3g}")
        ax.plot(k[1:], result["half_bit"][1:], color="gray", lw=0.8, label="half-bit")
        if result["crossing_invA"] is not None:
            ax.axvline(result["crossing_invA"], color="r", lw=0.8, label=f"{result['resolution_A']:.3f} A")
        ax.set_xlabel("spatial frequency (1/A)")
        ax.set_ylabel("FRC")
        ax.set_ylim(-0.2, 1.05)
        ax.legend()
        fig.tight_layout()
        from ptyrad_core.setup.readonly import plot_metadata

        tmp = Path(out).with_name(f".{Path(out).stem}.tmp-{os.getpid()}{Path(out).suffix}")
        try:
            fig.savefig(
                tmp,
                dpi=120,
                format=Path(out).suffix.lstrip(".") or "png",
                metadata=plot_metadata(out, FRC_PLOT_MARK),
            )
            os.replace(tmp, out)
        finally:
            plt.close(fig)
            if tmp.exists():
                tmp.unlink()
        result["plot"] = str(out)
        console.print(f"wrote {out}")
    return result
