"""Figures of a result file, drawn with matplotlib's Agg backend (no GUI, no pyplot state).

:func:`draw_figures` takes the dict of :func:`ptyrad_core.engine.results.read_result` and writes one PNG
per figure, each under a stable name (:data:`FIGURES`). Object images are cropped to the scanned
region (:func:`ptyrad_core.setup.scan.scanned_region`) so the poorly illuminated edges do not set the
colour scale; ``object_phase_sum.png`` also shows the full field. Colour limits come from the
0.5 and 99.5 percentiles of what is shown.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from ptyrad_core.setup.scan import scanned_region

log = logging.getLogger("ptyrad_core")

DPI = 100
PERCENTILES = (0.5, 99.5)
A = "\u00c5"  # Angstrom sign

#: The figures, in report order: file name -> caption.
FIGURES: dict[str, str] = {
    "object_phase_sum.png": "Object phase summed over slices (occupancy-weighted mean over object modes): "
    "full field and scanned region.",
    "object_phase_slices.png": "Object phase per slice (occupancy-weighted mean over object modes), "
    "scanned region.",
    "object_amplitude.png": "Object amplitude: product over slices (transmission of the stack), "
    "scanned region.",
    "object_amplitude_slices.png": "Object amplitude per slice, scanned region.",
    "probe_modes.png": "Probe modes: real-space amplitude (top) and Fourier-space amplitude (bottom), "
    "with power fractions.",
    "loss.png": "Loss per term and total per iteration; with held-out validation, the training and "
    "held-out loss side by side, the best held-out iteration and an early stop marked.",
    "positions.png": "Scan positions: nominal window centres (dots) and refined shifts (arrows, magnified).",
    "tilts.png": "Beam tilts.",
    "slice_thickness.png": "Slice thickness per iteration.",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _limits(*images: np.ndarray, max_samples: int = 1_000_000) -> tuple[float, float]:
    """Colour limits: the 0.5 / 99.5 percentiles of the finite values of ``images`` (of a regular
    subsample of at most about ``max_samples`` values)."""
    total = sum(np.size(i) for i in images)
    stride = max(1, total // max_samples)
    values = np.concatenate([np.asarray(i).ravel()[::stride].astype(np.float64) for i in images])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, PERCENTILES)
    if not hi > lo:
        pad = max(abs(lo) * 1e-6, 1e-12)
        lo, hi = lo - pad, hi + pad
    return float(lo), float(hi)


def _save(fig: Figure, path: Path) -> Path:
    """Render ``fig`` with Agg to ``path`` atomically (temporary name, then rename)."""
    FigureCanvasAgg(fig)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=DPI, format="png")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        fig.clear()
    return path


def _grid(n: int) -> tuple[int, int]:
    ncols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / ncols), ncols


def _weights(result: dict, omode: int) -> np.ndarray:
    occ = result.get("object/occupancy")
    occ = np.full(omode, 1.0 / omode) if occ is None else np.asarray(occ, dtype=np.float64)
    return occ / occ.sum()


def _mode_mean(stack: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_m w[m] stack[m]`` without a float64 copy of the whole stack."""
    out = np.zeros(stack.shape[1:], dtype=np.float32)
    for m in range(stack.shape[0]):
        out += np.float32(w[m]) * stack[m]
    return out


class _Ctx:
    """What the figures share: pixel size, crop box and extents in Angstrom."""

    def __init__(self, result: dict):
        attrs = result["attrs"]
        self.result = result
        self.attrs = attrs
        self.dx = float(attrs["dx_A"])
        self.wavelength = float(attrs.get("wavelength_A", float("nan")))
        self.config = attrs.get("config") or {}
        phase = result["object/phase"]
        self.omode, self.nz, self.NY, self.NX = phase.shape
        self.window = tuple(result["probe/modes"].shape[-2:])
        self.region = (slice(0, self.NY), slice(0, self.NX))
        nominal = result.get("positions/nominal_px")
        if nominal is not None and len(nominal):
            ys, xs = scanned_region(nominal, self.window)
            ys = slice(max(ys.start, 0), min(ys.stop, self.NY))
            xs = slice(max(xs.start, 0), min(xs.stop, self.NX))
            if ys.stop - ys.start >= 2 and xs.stop - xs.start >= 2:
                self.region = (ys, xs)
        self.cropped = self.region != (slice(0, self.NY), slice(0, self.NX))

    def extent(self, region=None) -> list[float]:
        """imshow extent (left, right, bottom, top) in Angstrom of a box of object pixels."""
        ys, xs = region or (slice(0, self.NY), slice(0, self.NX))
        return [xs.start * self.dx, xs.stop * self.dx, ys.stop * self.dx, ys.start * self.dx]

    def label(self, ax, what: str = "") -> None:
        ax.set_xlabel(f"x ({A})")
        ax.set_ylabel(f"y ({A})")
        if what:
            ax.set_title(what)

    @property
    def thickness(self) -> float:
        return float(self.result.get("slice_thickness_A", float("nan")))


def _image(fig, ax, img, ctx: _Ctx, region, title, unit, cmap="gray", limits=None, colorbar=True):
    lo, hi = limits or _limits(img)
    im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, extent=ctx.extent(region), interpolation="antialiased")
    ctx.label(ax, title)
    if colorbar:
        fig.colorbar(im, ax=ax, label=unit, shrink=0.9)
    return im


def _manual_grid(
    nrows: int,
    ncols: int,
    pw: float,
    ph: float,
    *,
    wgap: float,
    hgap: float,
    left: float = 0.75,
    right: float = 1.1,
    bottom: float = 0.55,
    top: float = 0.6,
    cbar_each: bool = False,
):
    """A figure with an ``nrows x ncols`` grid of axes laid out by hand, in inches (no layout engine:
    constrained layout costs seconds for dozens of panels). With ``cbar_each`` every panel gets a colour-bar
    axes on its right; otherwise one colour-bar axes spans the grid on the right.

    :return: ``(fig, axes (nrows, ncols), colour-bar axes (nrows, ncols) or a single axes)``.
    """
    cb_w, cb_pad = 0.12, 0.08
    cell_w = pw + (cb_pad + cb_w if cbar_each else 0.0)
    width = left + ncols * cell_w + (ncols - 1) * wgap + (right if cbar_each else cb_pad + cb_w + right)
    height = bottom + nrows * ph + (nrows - 1) * hgap + top
    fig = Figure(figsize=(width, height))
    axes = np.empty((nrows, ncols), dtype=object)
    caxes = np.empty((nrows, ncols), dtype=object)
    for r in range(nrows):
        y0 = height - top - (r + 1) * ph - r * hgap
        for c in range(ncols):
            x0 = left + c * (cell_w + wgap)
            axes[r, c] = fig.add_axes((x0 / width, y0 / height, pw / width, ph / height))
            if cbar_each:
                caxes[r, c] = fig.add_axes(
                    ((x0 + pw + cb_pad) / width, (y0 + 0.1 * ph) / height, cb_w / width, 0.8 * ph / height)
                )
    if cbar_each:
        return fig, axes, caxes
    x0 = left + ncols * cell_w + (ncols - 1) * wgap + cb_pad
    span = nrows * ph + (nrows - 1) * hgap
    cax = fig.add_axes((x0 / width, (bottom + 0.1 * span) / height, cb_w / width, 0.8 * span / height))
    return fig, axes, cax


def _panel_size(ctx: _Ctx, region, width: float) -> tuple[float, float]:
    ys, xs = region
    ratio = (ys.stop - ys.start) / max(xs.stop - xs.start, 1)
    return width, width * min(max(ratio, 0.3), 3.0)


def _slices_figure(ctx: _Ctx, stack: np.ndarray, what: str, unit: str) -> Figure:
    """A grid of ``stack`` (Nz, NY, NX) cropped to the scanned region, one shared colour scale."""
    ys, xs = ctx.region
    crops = [s[ys, xs] for s in stack]
    nrows, ncols = _grid(len(crops))
    pw, ph = _panel_size(ctx, ctx.region, min(3.0, 11.0 / ncols))
    fig, axes, cax = _manual_grid(nrows, ncols, pw, ph, wgap=0.12, hgap=0.32, top=0.75)
    lo, hi = _limits(*crops)
    im = None
    for i, ax in enumerate(axes.ravel()):
        if i >= len(crops):
            ax.set_axis_off()
            continue
        r, c = divmod(i, ncols)
        im = ax.imshow(
            crops[i],
            cmap="gray",
            vmin=lo,
            vmax=hi,
            extent=ctx.extent(ctx.region),
            interpolation="antialiased",
        )
        ax.set_title(f"slice {i} (z = {i * ctx.thickness:.3g} {A})", fontsize=8, pad=3)
        ax.tick_params(labelsize=7)
        if c == 0:
            ax.set_ylabel(f"y ({A})", fontsize=8)
        else:
            ax.tick_params(labelleft=False)
        if i + ncols >= len(crops):  # nothing below: label the x axis
            ax.set_xlabel(f"x ({A})", fontsize=8)
        else:
            ax.tick_params(labelbottom=False)
    fig.colorbar(im, cax=cax, label=unit)
    fig.suptitle(
        f"{what} per slice ({len(crops)} slices, {ctx.thickness:.4g} {A} each), scanned region",
        y=1 - 0.2 / fig.get_figheight(),
    )
    return fig


# --------------------------------------------------------------------------------------------
# the figures
# --------------------------------------------------------------------------------------------


def fig_object_phase_sum(ctx: _Ctx) -> Figure:
    # = metrics.projected_phase, summing slices in float64 without a float64 copy of the stack
    phase = np.tensordot(
        _weights(ctx.result, ctx.omode), ctx.result["object/phase"].sum(axis=1, dtype=np.float64), axes=1
    )
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax_full, ax_crop = fig.subplots(1, 2)
    _image(fig, ax_full, phase, ctx, None, f"full field ({ctx.NY} x {ctx.NX} px)", "phase (rad)")
    ys, xs = ctx.region
    ax_full.add_patch(
        Rectangle(
            (xs.start * ctx.dx, ys.start * ctx.dx),
            (xs.stop - xs.start) * ctx.dx,
            (ys.stop - ys.start) * ctx.dx,
            fill=False,
            edgecolor="tab:red",
            lw=1.2,
        )
    )
    title = (
        f"scanned region ({ys.stop - ys.start} x {xs.stop - xs.start} px)"
        if ctx.cropped
        else "scanned region = full field"
    )
    _image(fig, ax_crop, phase[ys, xs], ctx, ctx.region, title, "phase (rad)")
    fig.suptitle(
        f"Object phase, sum over {ctx.nz} slices, mean over {ctx.omode} object modes (dx = {ctx.dx:.4g} {A})"
    )
    return fig


def fig_object_phase_slices(ctx: _Ctx) -> Figure:
    stack = _mode_mean(ctx.result["object/phase"], _weights(ctx.result, ctx.omode))
    return _slices_figure(ctx, stack, "Object phase", "phase (rad)")


def fig_object_amplitude(ctx: _Ctx) -> Figure:
    w = _weights(ctx.result, ctx.omode)
    product = np.tensordot(w, ctx.result["object/amplitude"].prod(axis=1, dtype=np.float64), axes=1)
    ys, xs = ctx.region
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    _image(
        fig,
        ax,
        product[ys, xs],
        ctx,
        ctx.region,
        f"Object amplitude, product over {ctx.nz} slices\n"
        f"(mean over {ctx.omode} object modes, scanned region)",
        "amplitude (transmission, unitless)",
    )
    return fig


def fig_object_amplitude_slices(ctx: _Ctx) -> Figure:
    stack = _mode_mean(ctx.result["object/amplitude"], _weights(ctx.result, ctx.omode))
    return _slices_figure(ctx, stack, "Object amplitude", "amplitude (transmission, unitless)")


def fig_probe_modes(ctx: _Ctx) -> Figure:
    modes = np.asarray(ctx.result["probe/modes"])
    powers = ctx.result.get("probe/powers")
    if powers is None:
        p = np.sum(np.abs(modes) ** 2, axis=(1, 2))
        powers = p / p.sum()
    n, ny, nx = modes.shape
    ncols = min(n, 4)
    groups = math.ceil(n / ncols)
    pw = 2.3 if n > 2 else 2.6
    fig, axes, caxes = _manual_grid(
        2 * groups,
        ncols,
        pw,
        pw * ny / nx,
        wgap=1.55,
        hgap=0.75,
        left=0.7,
        right=0.85,
        top=0.75,
        cbar_each=True,
    )
    real_ext = [-(nx // 2) * ctx.dx, (nx - nx // 2) * ctx.dx, (ny - ny // 2) * ctx.dx, -(ny // 2) * ctx.dx]
    # scattering angle per Fourier pixel: lambda * k, k = f / dx, in mrad
    da_y, da_x = ctx.wavelength / (ny * ctx.dx) * 1e3, ctx.wavelength / (nx * ctx.dx) * 1e3
    fourier_ext = [-(nx // 2) * da_x, (nx - nx // 2) * da_x, (ny - ny // 2) * da_y, -(ny // 2) * da_y]
    for i in range(groups * ncols):
        g, c = divmod(i, ncols)
        pairs = [(axes[2 * g, c], caxes[2 * g, c]), (axes[2 * g + 1, c], caxes[2 * g + 1, c])]
        if i >= n:
            for ax, cax in pairs:
                ax.set_axis_off()
                cax.set_axis_off()
            continue
        real = np.abs(modes[i])
        fourier = np.abs(np.fft.fftshift(np.fft.fft2(modes[i], norm="ortho")))
        for (ax, cax), img, ext, unit, xl, yl, title in (
            (pairs[0], real, real_ext, "amplitude (a.u.)", f"x ({A})", f"y ({A})", "real space"),
            (
                pairs[1],
                fourier,
                fourier_ext,
                "Fourier amplitude (a.u.)",
                "angle x (mrad)",
                "angle y (mrad)",
                "|FFT|",
            ),
        ):
            lo, hi = _limits(img)
            im = ax.imshow(
                img, cmap="magma", vmin=min(lo, 0.0), vmax=hi, extent=ext, interpolation="antialiased"
            )
            ax.set_xlabel(xl, fontsize=8)
            ax.set_ylabel(yl, fontsize=8, labelpad=1)
            ax.tick_params(labelsize=7)
            ax.set_title(f"mode {i} {title}: power {100 * float(powers[i]):.2f}%", fontsize=9, pad=3)
            cb = fig.colorbar(im, cax=cax)
            cb.set_label(unit, fontsize=8)
            cb.ax.tick_params(labelsize=7)
    fig.suptitle(
        f"Probe: {n} modes, {ny} x {nx} px (real-space and Fourier-space amplitude)",
        y=1 - 0.2 / fig.get_figheight(),
    )
    return fig


# --------------------------------------------------------------------------------------------
# held-out validation (recon.validation): what a result file says about it
# --------------------------------------------------------------------------------------------

#: attributes of the result file's ``validation`` group that the views read (docs/results.md)
VALIDATION_ATTRS = (
    "fraction",
    "seed",
    "every",
    "keep",
    "best_iteration",
    "best_heldout_loss",
    "kept_iteration",
    "tolerance",
    "stopped_at",
)


def read_validation_attrs(path) -> dict[str, Any]:
    """The attributes of the ``validation`` group of the result file ``path`` as plain Python
    values (``{}`` for a file without one: a run without held-out data, or a file written before
    issue 17). :func:`~ptyrad_core.engine.results.read_result` returns datasets and root attributes
    only; the views add these under ``attrs["validation"]`` (:func:`with_validation`)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f.get("validation")
            if not isinstance(group, h5py.Group):
                return {}
            out = {}
            for key, value in group.attrs.items():
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                elif isinstance(value, np.generic):
                    value = value.item()
                out[key] = value
            return out
    except OSError:
        return {}


def with_validation(result: dict, path) -> dict:
    """``result`` (from :func:`~ptyrad_core.engine.results.read_result`) with the ``validation``
    group's attributes under ``result["attrs"]["validation"]``, unless the reader put them there."""
    attrs = result.setdefault("attrs", {})
    if not isinstance(attrs.get("validation"), dict):
        attrs["validation"] = read_validation_attrs(path)
    return result


def _int_or_none(value) -> int | None:
    """An iteration attribute: ``-1`` (and anything not an integer) means none."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def heldout_info(result: dict) -> dict[str, Any] | None:
    """The held-out validation of a result: ``None`` when the file has no held-out loss (a run
    with ``recon.validation.fraction: 0``, or a file from before held-out validation existed).

    :return: ``iteration`` (n,) int and ``heldout`` (n,) float64, the held-out loss per iteration
        aligned with ``history/iteration`` (NaN where it was not evaluated, ``every`` > 1);
        ``best_iteration`` / ``stopped_at`` (int or ``None``) and ``best_heldout_loss`` (float or
        ``None``); ``kept_iteration``, the state ``keep: best`` keeps (the latest tied with the
        minimum; the minimum's in files that do not say); ``state_iteration``, the iteration whose
        state the file's arrays hold;
        ``fraction``, ``seed``, ``every``, ``keep`` as the file stores them (``None`` if absent);
        ``final``, the last evaluated held-out loss.
    """
    it = np.asarray(result.get("history/iteration", np.zeros(0, np.int64)))
    values = result.get("history/heldout_loss")
    if values is None:
        return None
    heldout = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(heldout)
    if not finite.any() or len(heldout) != len(it):
        return None
    attrs = result.get("attrs") or {}
    v = attrs.get("validation") if isinstance(attrs.get("validation"), dict) else {}
    best = _int_or_none(v.get("best_iteration"))
    best_loss = v.get("best_heldout_loss")
    if best is None:  # a file without the group's attributes: the plain minimum of the curve
        k = int(np.nanargmin(heldout))
        best, best_loss = int(it[k]), float(heldout[k])
    elif best_loss is None or not np.isfinite(float(best_loss)):
        at = np.nonzero(it == best)[0]
        best_loss = float(heldout[at[0]]) if len(at) and np.isfinite(heldout[at[0]]) else None
    state = attrs.get("state_iteration", attrs.get("iteration"))
    return {
        "iteration": it,
        "heldout": heldout,
        "final": float(heldout[finite][-1]),
        "best_iteration": best,
        "best_heldout_loss": None if best_loss is None else float(best_loss),
        "kept_iteration": _int_or_none(v.get("kept_iteration", best)),
        "stopped_at": _int_or_none(v.get("stopped_at")),
        "state_iteration": _int_or_none(state),
        "fraction": v.get("fraction"),
        "seed": v.get("seed"),
        "every": v.get("every"),
        "keep": v.get("keep"),
    }


def _yscale(ax, values: np.ndarray) -> None:
    """Log scale for positive values, symlog when some are zero or negative."""
    finite = values[np.isfinite(values)]
    if finite.size and np.all(finite > 0):
        ax.set_yscale("log")
    elif finite.size:
        nonzero = np.abs(finite[finite != 0])
        ax.set_yscale("symlog", linthresh=max(nonzero.min() if nonzero.size else 1.0, 1e-12))


def _loss_terms_axes(ax, it, total, terms, marker) -> None:
    ax.plot(
        it,
        total,
        color="k",
        lw=2,
        marker=marker,
        label=f"total (final {total[-1]:.5g})" if len(total) else "total",
    )
    for name, values in terms.items():
        ax.plot(
            it,
            values,
            ls="--",
            marker=marker,
            ms=4,
            label=f"{name} (final {values[-1]:.5g})" if len(values) else name,
        )
    _yscale(ax, np.concatenate([total, *terms.values()]) if terms else total)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (weighted, mean over batches)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def _heldout_axes(ax, it, total, held: dict, marker) -> None:
    """Training loss and held-out loss on one axis (both are means per compared pixel of the same
    weighted loss stack, so they share a scale), the best held-out iteration and the early stop
    marked."""
    h = held["heldout"]
    ok = np.isfinite(h)
    ax.plot(it, total, color="k", lw=2, marker=marker, label=f"training (final {total[-1]:.5g})")
    ax.plot(
        it[ok],
        h[ok],
        color="tab:orange",
        lw=2,
        marker=marker if ok.sum() <= 30 else None,
        label=f"held-out (final {held['final']:.5g})",
    )
    best = held["best_iteration"]
    if best is not None:
        text = f"best held-out: iteration {best}"
        if held["best_heldout_loss"] is not None:
            text += f" ({held['best_heldout_loss']:.5g})"
            ax.plot([best], [held["best_heldout_loss"]], "*", color="tab:green", ms=14, zorder=4)
        ax.axvline(best, color="tab:green", ls=":", lw=1.5, label=text)
    if held["stopped_at"] is not None:
        ax.axvline(
            held["stopped_at"],
            color="tab:red",
            ls="-.",
            lw=1.5,
            label=f"stopped early: iteration {held['stopped_at']}",
        )
    _yscale(ax, np.concatenate([total, h]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (weighted, mean per compared pixel)")
    state = held["state_iteration"]
    kept = f"; this file holds iteration {state}" if state is not None else ""
    fraction = held["fraction"]
    share = f"{100 * float(fraction):.3g}% of the pixels" if fraction is not None else "held-out pixels"
    ax.set_title(f"Training vs held-out loss ({share} held out{kept})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def fig_loss(ctx: _Ctx) -> Figure:
    """The loss per term and total; with held-out validation, a second panel beside it: the
    training and held-out loss with the best held-out iteration (star, dotted line) and the early
    stop (dash-dotted line) marked."""
    r = ctx.result
    it = np.asarray(r["history/iteration"])
    total = np.asarray(r["history/loss"], dtype=np.float64)
    terms = {
        k.split("/", 2)[2]: np.asarray(v, dtype=np.float64)
        for k, v in r.items()
        if k.startswith("history/loss_terms/")
    }
    held = heldout_info(r)
    marker = "o" if len(it) <= 30 else None
    if held is None:
        fig = Figure(figsize=(7, 4.5), layout="constrained")
        ax = fig.subplots()
        _loss_terms_axes(ax, it, total, terms, marker)
        ax.set_title(f"Loss ({len(it)} iterations)")
        return fig
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax_terms, ax_held = fig.subplots(1, 2)
    _loss_terms_axes(ax_terms, it, total, terms, marker)
    ax_terms.set_title(f"Training loss per term ({len(it)} iterations)", fontsize=9)
    _heldout_axes(ax_held, it, total, held, marker)
    return fig


MAX_ARROWS = 900


def _thin(points: np.ndarray, cell: float) -> np.ndarray:
    """Indices of one point per ``cell``-sized square: a spatially even subset."""
    keys = np.floor((points - points.min(0)) / cell).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.sort(first)


def fig_positions(ctx: _Ctx) -> Figure:
    r = ctx.result
    nominal = np.asarray(r["positions/nominal_px"], dtype=np.float64)
    refined = np.asarray(r.get("positions/refined_px", nominal), dtype=np.float64)
    shift_A = (refined - nominal) * ctx.dx
    centre_A = (nominal + np.asarray(ctx.window) / 2) * ctx.dx
    mag = np.hypot(shift_A[:, 0], shift_A[:, 1])
    n = len(centre_A)
    max_shift = float(mag.max()) if n else 0.0
    # typical spacing of the scan: sqrt(area per position), or extent / N for a line
    span = centre_A.max(0) - centre_A.min(0)
    step = (
        math.sqrt(span[0] * span[1] / n) if span.min() > 0 else (span.max() / n if span.max() > 0 else ctx.dx)
    )
    # dense scans: arrows for an even subset only (one per cell), every position coloured by its shift
    shown = np.arange(n)
    if n > MAX_ARROWS:
        cell = step * math.sqrt(n / MAX_ARROWS)
        shown = _thin(centre_A, cell)
        step = cell
    typical = float(np.percentile(mag[shown], 95)) if n else 0.0
    scale = 0.8 * step / typical if typical > 0 else (0.8 * step / max_shift if max_shift > 0 else 1.0)

    fig = Figure(figsize=(7, 6.3), layout="constrained")
    ax = fig.subplots()
    ax.add_patch(
        Rectangle((0, 0), ctx.NX * ctx.dx, ctx.NY * ctx.dx, fill=False, edgecolor="0.6", lw=1, ls=":")
    )
    norm = Normalize(0.0, max(max_shift, 1e-12))
    if n > MAX_ARROWS:
        ax.scatter(
            centre_A[:, 1],
            centre_A[:, 0],
            s=float(np.clip(2e4 / n, 0.3, 4.0)),
            c=mag,
            cmap="viridis",
            norm=norm,
            lw=0,
            alpha=0.6,
            zorder=2,
        )
    else:
        ax.scatter(centre_A[:, 1], centre_A[:, 0], s=8.0 if n <= 400 else 3.0, c="k", lw=0, zorder=2)
    q = ax.quiver(
        centre_A[shown, 1],
        centre_A[shown, 0],
        shift_A[shown, 1] * scale,
        shift_A[shown, 0] * scale,
        mag[shown],
        angles="xy",
        scale_units="xy",
        scale=1.0,
        cmap="viridis",
        norm=norm,
        width=0.004 if len(shown) <= 100 else 0.0025,
        zorder=3,
    )
    fig.colorbar(q, ax=ax, label=f"shift ({A})", shrink=0.9)
    # zoom on the scan (plus a step of margin), the object's outline dotted where in view
    lo, hi = centre_A.min(0) - 1.5 * step, centre_A.max(0) + 1.5 * step
    ax.set_xlim(lo[1], hi[1])
    ax.set_ylim(hi[0], lo[0])
    ax.set_aspect("equal")
    ctx.label(ax)
    if max_shift > 0:
        which = f"{len(shown)} of {n} positions" if len(shown) < n else f"{n} positions"
        title = (
            f"Positions: nominal window centres (dots); arrows = refined shift x {scale:.3g} ({which})\n"
            f"max shift {max_shift:.3g} {A} = {max_shift / ctx.dx:.3g} px, "
            f"drawn as {max_shift * scale:.3g} {A}"
        )
    else:
        title = f"Positions: {n} nominal window centres (no refinement: all shifts 0)"
    ax.set_title(title, fontsize=9)
    return fig


def _scan_shape(ctx: _Ctx, n: int) -> tuple[int, int] | None:
    scan = ctx.config.get("scan") or {}
    ns, nf = scan.get("n_slow"), scan.get("n_fast")
    if isinstance(ns, int) and isinstance(nf, int) and ns * nf == n:
        return ns, nf
    return None


def fig_tilts(ctx: _Ctx) -> Figure:
    tilts = np.atleast_2d(np.asarray(ctx.result["tilts_mrad"], dtype=np.float64))
    n = len(tilts)
    if n == 1:
        ty, tx = tilts[0]
        fig = Figure(figsize=(5.5, 5), layout="constrained")
        ax = fig.subplots()
        r = max(abs(ty), abs(tx), 1.0) * 1.5
        ax.annotate("", xy=(tx, ty), xytext=(0, 0), arrowprops=dict(arrowstyle="->", lw=2, color="tab:red"))
        ax.plot([0], [0], "k+", ms=10)
        ax.text(
            0.03,
            0.95,
            f"t_y = {ty:.4g} mrad\nt_x = {tx:.4g} mrad\n|t| = {math.hypot(ty, tx):.4g} mrad",
            transform=ax.transAxes,
            va="top",
            fontsize=10,
            family="monospace",
        )
        ax.set_xlim(-r, r)
        ax.set_ylim(-r, r)
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("t_x (mrad)")
        ax.set_ylabel("t_y (mrad)")
        ax.set_title("Global tilt (one value for all positions)")
        return fig
    shape = _scan_shape(ctx, n)
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    if shape is not None:
        grid = tilts.reshape(*shape, 2)
        for k, (ax, name) in enumerate(zip(axes, ("t_y", "t_x"))):
            img = grid[..., k]
            lo, hi = _limits(img)
            im = ax.imshow(
                img,
                cmap="coolwarm",
                vmin=lo,
                vmax=hi,
                interpolation="nearest",
                extent=[-0.5, shape[1] - 0.5, shape[0] - 0.5, -0.5],
            )
            ax.set_xlabel("scan column (fast axis, index)")
            ax.set_ylabel("scan row (slow axis, index)")
            ax.set_title(f"{name}: mean {img.mean():.4g}, std {img.std():.3g} mrad")
            fig.colorbar(im, ax=ax, label=f"{name} (mrad)", shrink=0.9)
        fig.suptitle(f"Tilts per position on the {shape[0]} x {shape[1]} scan grid")
    else:
        nominal = np.asarray(ctx.result["positions/nominal_px"], dtype=np.float64)
        centre_A = (nominal + np.asarray(ctx.window) / 2) * ctx.dx
        for k, (ax, name) in enumerate(zip(axes, ("t_y", "t_x"))):
            lo, hi = _limits(tilts[:, k])
            sc = ax.scatter(
                centre_A[:, 1], centre_A[:, 0], c=tilts[:, k], cmap="coolwarm", vmin=lo, vmax=hi, s=14
            )
            ax.set_ylim(ctx.NY * ctx.dx, 0)
            ax.set_xlim(0, ctx.NX * ctx.dx)
            ax.set_aspect("equal")
            ctx.label(ax, f"{name}: mean {tilts[:, k].mean():.4g}, std {tilts[:, k].std():.3g} mrad")
            fig.colorbar(sc, ax=ax, label=f"{name} (mrad)", shrink=0.9)
        fig.suptitle(f"Tilts per position ({n} positions, not a raster: shown at the window centres)")
    return fig


def fig_slice_thickness(ctx: _Ctx) -> Figure:
    r = ctx.result
    it = np.asarray(r["history/iteration"])
    dz = np.asarray(r["history/slice_thickness_A"], dtype=np.float64)
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(it, dz, marker="o" if len(it) <= 30 else None, color="tab:blue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"slice thickness ({A})")
    final = dz[-1] if len(dz) else ctx.thickness
    ax.set_title(f"Slice thickness: final {final:.5g} {A} x {ctx.nz} slices = {final * ctx.nz:.4g} {A}")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(True, alpha=0.3)
    return fig


DRAW: dict[str, Callable[[_Ctx], Figure]] = {
    "object_phase_sum.png": fig_object_phase_sum,
    "object_phase_slices.png": fig_object_phase_slices,
    "object_amplitude.png": fig_object_amplitude,
    "object_amplitude_slices.png": fig_object_amplitude_slices,
    "probe_modes.png": fig_probe_modes,
    "loss.png": fig_loss,
    "positions.png": fig_positions,
    "tilts.png": fig_tilts,
    "slice_thickness.png": fig_slice_thickness,
}
assert DRAW.keys() == FIGURES.keys()


def draw_figures(result: dict, out_dir: Path, strict: bool = False) -> list[Path]:
    """Draw every figure of ``result`` (from :func:`~ptyrad_core.engine.results.read_result`) into
    ``out_dir``.

    Each PNG is written atomically. A figure that cannot be drawn is logged as a warning and
    left out (its old file removed), unless ``strict``, which raises instead.

    :return: the paths written, in :data:`FIGURES` order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(result)
    written = []
    for name, draw in DRAW.items():
        path = out_dir / name
        try:
            written.append(_save(draw(ctx), path))
        except Exception as exc:
            if strict:
                raise
            log.warning("figure %s not drawn: %s: %s", name, type(exc).__name__, exc)
            path.unlink(missing_ok=True)
    return written


def kept_label(held: dict, state: int) -> str:
    """What the state of iteration ``state`` in a result file is, in words (show, report)."""
    if state == held["best_iteration"]:
        return "the held-out minimum"
    if state == held.get("kept_iteration"):
        return "the latest state tied with the held-out minimum"
    return "the last state"


def stop_text(held: dict) -> str | None:
    """Why the run stopped early, in words (``None``: it did not)."""
    stopped = held["stopped_at"]
    if stopped is None:
        return None
    return (
        f"stopped at iteration {stopped}: no state as good as the held-out minimum "
        f"(iteration {held['best_iteration']}) since iteration {held['kept_iteration']}"
    )
