"""The HTML report of a result file, and the core observer ``core.figures`` that writes it at every save.

:func:`write_report` reads ``result.h5``, draws the figures (:mod:`ptyrad_core.observers.figures`) into
``figures/`` and writes ``report.html`` next to them: one self-contained page (inline CSS, images by
relative path, no external resources) that needs nothing but the result file to be re-drawn
(``ptyrad-core report RESULT.h5``, :mod:`ptyrad_core.apps.report`). :class:`FigureObserver` calls it
after each write of the result file unless ``output.figures`` is false; a failure is logged, never
raised into the run. Registered as ``core.figures`` (module listed in
:data:`~ptyrad_core.kernel.plugin_manager.DEFAULT_PLUGINS`), disabled by that name.
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ptyrad_core.kernel.hookspecs import hookimpl

log = logging.getLogger("ptyrad_core")

#: the name this observer is registered under (and disabled by)
PLUGIN_NAME = "core.figures"

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"
MAX_TIMING_ROWS = 500

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em auto;
       max-width: 1200px; padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.85em; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.8em; overflow: auto; max-height: 40em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.scroll { max-height: 20em; overflow: auto; display: inline-block; }
.muted { color: #777; font-size: 0.85em; } svg.spark { border: 1px solid #eee; background: #fcfcfc; }
"""

# Counts the images that loaded (complete with a decoded width) once the page has loaded.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.body.dataset.imagesLoaded = ok + "/" + imgs.length;
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(x: float, fmt: str = ".6g") -> str:
    try:
        return format(float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


def _table(header: Iterable[str] | None, rows: Iterable[Iterable[Any]], numeric: Iterable[int] = ()) -> str:
    numeric = set(numeric)
    out = ["<table>"]
    if header is not None:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{_e(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    return (
        "<table>\n" + "\n".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows) + "\n</table>"
    )


def _sparkline(values: np.ndarray, width: int = 480, height: int = 60) -> str:
    """An inline SVG polyline of ``values`` (no script, no external resource)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return ""
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else 1.0
    xs = np.linspace(2, width - 2, v.size)
    ys = height - 2 - (v - lo) / span * (height - 4)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="time per iteration"><polyline fill="none" stroke="#1f77b4" stroke-width="1.5" '
        f'points="{points}"/></svg> '
        f'<span class="muted">{_e(_num(lo, ".4g"))} to {_e(_num(hi, ".4g"))} s</span>'
    )


def _loss_terms(result: dict) -> dict[str, np.ndarray]:
    prefix = "history/loss_terms/"
    return {
        k[len(prefix) :]: np.asarray(v, dtype=np.float64) for k, v in result.items() if k.startswith(prefix)
    }


def _last(values) -> str:
    values = np.asarray(values)
    return _num(values[-1]) if values.size else "-"


def _loss_curves_svg(
    it: np.ndarray, loss: np.ndarray, held: dict, width: int = 640, height: int = 260
) -> str:
    """Training and held-out loss per iteration as an inline SVG (no script, no external resource):
    log scale when every value is positive; the best held-out iteration (dotted green) and an early
    stop (dash-dotted red) as vertical lines. Only finite points are drawn (the held-out loss is NaN
    on iterations it was not evaluated on)."""
    h = held["heldout"]
    it = np.asarray(it, dtype=np.float64)
    values = np.concatenate([loss[np.isfinite(loss)], h[np.isfinite(h)]])
    if values.size == 0 or it.size == 0:
        return ""
    log_scale = bool(np.all(values > 0))

    def yv(v):
        return np.log10(v) if log_scale else v

    lo, hi = float(np.min(yv(values))), float(np.max(yv(values)))
    span = hi - lo if hi > lo else 1.0
    x0, x1 = float(it.min()), float(it.max())
    xspan = x1 - x0 if x1 > x0 else 1.0
    left, right, top, bottom = 60, 12, 12, 34

    def px(x):
        return left + (x - x0) / xspan * (width - left - right)

    def py(v):
        return top + (hi - yv(v)) / span * (height - top - bottom)

    def polyline(xs, vs, cls, colour):
        ok = np.isfinite(vs)
        pts = " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in zip(xs[ok], vs[ok]))
        return f'<polyline class="{cls}" fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>'

    def vline(x, cls, colour, dash, label):
        return (
            f'<line class="{cls}" data-iteration="{int(x)}" x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" '
            f'y2="{height - bottom}" stroke="{colour}" stroke-width="1.5" stroke-dasharray="{dash}">'
            f"<title>{_e(label)}</title></line>"
        )

    out = [
        f'<svg id="loss-curves" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="training and held-out loss per iteration" '
        'style="background:#fcfcfc;border:1px solid #eee">',
        polyline(it[: len(loss)], loss, "training", "#222"),
        polyline(it[: len(h)], h, "heldout", "#ff7f0e"),
    ]
    best, stopped = held["best_iteration"], held["stopped_at"]
    if best is not None:
        out.append(vline(best, "best", "#2ca02c", "2,3", f"best held-out loss: iteration {best}"))
    if stopped is not None:
        out.append(vline(stopped, "stopped", "#d62728", "6,3,2,3", f"stopped early at iteration {stopped}"))
    scale = "log scale" if log_scale else "linear scale"
    fmt = (lambda v: _num(10**v, ".3g")) if log_scale else (lambda v: _num(v, ".3g"))
    out += [
        f'<text x="4" y="{top + 10}" font-size="11">{_e(fmt(hi))}</text>',
        f'<text x="4" y="{height - bottom}" font-size="11">{_e(fmt(lo))}</text>',
        f'<text x="{left}" y="{height - 10}" font-size="11">iteration {int(x0)}</text>',
        f'<text x="{width - right}" y="{height - 10}" font-size="11" text-anchor="end">{int(x1)}</text>',
        f'<text x="{left + 90}" y="{height - 10}" font-size="11">'
        f'<tspan fill="#222">&#9644; training</tspan>  <tspan fill="#ff7f0e">&#9644; held-out</tspan>'
        f"  ({scale})</text>",
        "</svg>",
    ]
    return "\n".join(out)


def _heldout_rows(held: dict) -> list[tuple[str, Any]]:
    """The summary rows of the held-out validation."""
    from ptyrad_core.observers.figures import kept_label, stop_text

    rows: list[tuple[str, Any]] = [("held-out loss, final", _num(held["final"]))]
    best = held["best_iteration"]
    if best is not None:
        value = held["best_heldout_loss"]
        rows.append(
            ("held-out loss, best", f"{_num(value) if value is not None else '-'} at iteration {best}")
        )
    rows.append(("early stop", stop_text(held) or "no"))
    state = held["state_iteration"]
    if state is not None:
        which = kept_label(held, state)
        rows.append(
            ("state in this file", f"iteration {state} ({which}; recon.stop.keep: {held['keep'] or '-'})")
        )
    if held["fraction"] is not None:
        every = held["every"]
        rows.append(
            (
                "held out",
                f"{100 * float(held['fraction']):.3g}% of the detector pixels of every pattern (seed "
                f"{held['seed']}, evaluated every {every if every is not None else 1} iteration(s))",
            )
        )
    return rows


def render_html(result: dict, result_path: Path, figures: list[tuple[str, str]]) -> str:
    """The report page for ``result`` (from :func:`~ptyrad_core.engine.results.read_result`).

    :param figures: ``(relative src, caption)`` per image, in display order.
    """
    from ptyrad_core.observers.figures import heldout_info  # matplotlib: loaded when a report is drawn

    attrs = result["attrs"]
    it = np.asarray(result.get("history/iteration", []))
    times = np.asarray(result.get("history/time_s", []), dtype=np.float64)
    loss = np.asarray(result.get("history/loss", []), dtype=np.float64)
    terms = _loss_terms(result)
    held = heldout_info(result)
    obj = result.get("object/phase")
    probe = result.get("probe/modes")
    dx = attrs.get("dx_A")
    versions = attrs.get("versions") or {}
    config = attrs.get("config")
    iteration = int(attrs.get("iteration", -1))

    parts: list[str] = []
    w = parts.append
    w("<!DOCTYPE html>")
    w('<html lang="en"><head><meta charset="utf-8">')
    w('<meta name="viewport" content="width=device-width, initial-scale=1">')
    w(f"<title>ptyrad_core report: {_e(result_path.name)}, iteration {iteration}</title>")
    w(f"<style>{_CSS}</style>")
    w(f"<script>{_SCRIPT}</script>")
    w("</head>")
    marks = ""
    if held is not None:
        for key, name in (("best_iteration", "best-iteration"), ("stopped_at", "stopped-at")):
            marks += f' data-{name}="{held[key] if held[key] is not None else -1}"'
    w(f'<body data-iteration="{iteration}" data-images-total="{len(figures)}"{marks}>')

    # -- header
    w(f"<h1>ptyrad_core report &mdash; iteration {iteration}</h1>")
    w(
        _kv_table(
            [
                ("result file", str(result_path)),
                ("iteration", iteration),
                ("created", attrs.get("created", "")),
                ("data file", attrs.get("data_file", "")),
                ("data sha256", attrs.get("data_sha256", "")),
                ("seed", attrs.get("seed", "")),
                ("software", ", ".join(f"{k} {v}" for k, v in versions.items())),
            ]
        )
    )

    # -- summary
    w("<h2>Summary</h2>")
    rows: list[tuple[str, Any]] = [("final loss (total)", _last(loss))]
    rows += [(f"final loss: {name}", _last(v)) for name, v in terms.items()]
    if held is not None:
        rows += _heldout_rows(held)
    if times.size:
        rows += [
            ("time per iteration, median", f"{np.median(times):.4g} s"),
            ("time per iteration, mean", f"{np.mean(times):.4g} s"),
            ("total time", f"{np.sum(times):.4g} s over {times.size} iterations"),
        ]
    if obj is not None:
        rows.append(("object shape (modes, slices, y, x)", " x ".join(str(s) for s in obj.shape)))
    if "object/occupancy" in result:
        rows.append(("object-mode occupancy", ", ".join(_num(o, ".4g") for o in result["object/occupancy"])))
    if probe is not None:
        rows.append(("probe shape (modes, y, x)", " x ".join(str(s) for s in probe.shape)))
    if "probe/powers" in result:
        rows.append(
            ("probe-mode powers", ", ".join(f"{100 * float(p):.2f}%" for p in result["probe/powers"]))
        )
    if dx is not None:
        rows.append(("dx", f"{float(dx):.6g} \u00c5"))
    if "wavelength_A" in attrs:
        rows.append(("wavelength", f"{float(attrs['wavelength_A']):.6g} \u00c5"))
    if "slice_thickness_A" in result:
        rows.append(("slice thickness", f"{float(result['slice_thickness_A']):.6g} \u00c5"))
    if "positions/nominal_px" in result:
        rows.append(("positions", len(result["positions/nominal_px"])))
    if "tilts_mrad" in result:
        t = np.atleast_2d(result["tilts_mrad"])
        rows.append(("tilts", "global" if len(t) == 1 else f"per position ({len(t)})"))
    w(_kv_table(rows))

    # -- the training and held-out loss, beside each other
    if held is not None:
        w("<h2>Loss: training and held-out</h2>")
        w(
            '<p class="muted">The held-out loss is the same weighted loss stack on detector pixels the '
            "optimizer never saw (recon.validation); it rises when the model starts fitting the noise.</p>"
        )
        w(f"<p>{_loss_curves_svg(it, loss, held)}</p>")

    # -- figures
    w("<h2>Figures</h2>")
    if not figures:
        w('<p class="muted">No figures were drawn (see the log for the reason).</p>')
    for src, caption in figures:
        w(
            f'<figure><img src="{_e(src)}" alt="{_e(caption)}" loading="eager">'
            f"<figcaption>{_e(src.rsplit('/', 1)[-1])}: {_e(caption)}</figcaption></figure>"
        )

    # -- timing
    w("<h2>Timing</h2>")
    if times.size:
        w('<table id="timing-summary">')
        w(
            "<tr><th>iterations</th><th>min (s)</th><th>median (s)</th><th>mean (s)</th><th>max (s)</th>"
            "<th>total (s)</th></tr>"
        )
        w(
            "<tr>"
            + "".join(
                f'<td class="num">{_e(v)}</td>'
                for v in (
                    times.size,
                    _num(times.min(), ".4g"),
                    _num(np.median(times), ".4g"),
                    _num(times.mean(), ".4g"),
                    _num(times.max(), ".4g"),
                    _num(times.sum(), ".4g"),
                )
            )
            + "</tr></table>"
        )
        w(f"<p>{_sparkline(times)}</p>")
        n = times.size
        shown = range(max(0, n - MAX_TIMING_ROWS), n)
        if n > MAX_TIMING_ROWS:
            w(f'<p class="muted">The last {MAX_TIMING_ROWS} of {n} iterations.</p>')
        h = held["heldout"] if held is not None else None
        header = ["iteration", "time (s)", "loss", *(["held-out"] if h is not None else []), *terms]
        body = [
            [
                int(it[i]) if i < len(it) else i + 1,
                _num(times[i], ".4g"),
                _num(loss[i]) if i < len(loss) else "-",
                *([_num(h[i]) if i < len(h) and np.isfinite(h[i]) else "-"] if h is not None else []),
                *(_num(v[i]) if i < len(v) else "-" for v in terms.values()),
            ]
            for i in shown
        ]
        w(
            '<div class="scroll" id="timing-per-iteration">'
            + _table(header, body, numeric=range(len(header)))
            + "</div>"
        )
    else:
        w('<p class="muted">No iterations recorded.</p>')

    # -- plugins
    w("<h2>Plugins</h2>")
    plugins = attrs.get("plugins") or []
    w(
        _table(
            ["name", "source", "distribution", "version"],
            [
                [p.get("name", ""), p.get("source", ""), p.get("distribution") or "", p.get("version") or ""]
                for p in plugins
            ],
        )
    )

    # -- config
    w("<h2>Resolved config</h2>")
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    w(f"<pre>{_e(text)}</pre>")
    w(
        f'<p class="muted">Written by ptyrad_core {_e(versions.get("ptyrad_core", ""))} '
        f"from {_e(result_path.name)}.</p>"
    )
    w("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(result_path: Path, out_dir: Path | None = None) -> Path:
    """Draw the figures of a result file and write ``report.html``.

    :param result_path: a ``ptyrad_core`` result file (``result.h5``).
    :param out_dir: where ``report.html`` and ``figures/`` go; default the result file's folder.
    :return: the path of ``report.html`` (written atomically: temporary name, then rename).
    """
    from ptyrad_core.engine.results import read_result, unexpected_content
    from ptyrad_core.observers.figures import FIGURES, draw_figures, with_validation

    result_path = Path(result_path)
    out_dir = Path(out_dir) if out_dir is not None else result_path.parent
    result = with_validation(read_result(result_path), result_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    with unexpected_content(result_path):
        paths = draw_figures(result, out_dir / FIGURES_DIR)
        figures = [(f"{FIGURES_DIR}/{p.name}", FIGURES.get(p.name, p.stem)) for p in paths]
        page = render_html(result, result_path, figures)
    target = out_dir / REPORT_NAME
    tmp = target.with_name(f".{REPORT_NAME}.tmp-{os.getpid()}")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def report_files(folder: Path) -> list[tuple[Path, str, Any]]:
    """``(path, kind, is_previous_output)`` of the files :func:`write_report` writes into
    ``folder``: ``report.html`` (recognised by its ``<title>ptyrad_core report``) and
    ``figures/NAME.png`` (a PNG written by matplotlib)."""
    from ptyrad_core.observers.figures import FIGURES
    from ptyrad_core.setup.readonly import has_marker, starts_with

    def is_page(p):
        return has_marker(p, b"<title>ptyrad_core report")

    def is_figure(p):
        return starts_with(p, b"\x89PNG") and has_marker(p, b"Matplotlib")

    folder = Path(folder)
    return [(folder / REPORT_NAME, "ptyrad_core report", is_page)] + [
        (folder / FIGURES_DIR / name, "ptyrad_core figure", is_figure) for name in FIGURES
    ]


class FigureObserver:
    """Writes the figures and ``report.html`` into the output folder after each save.

    Off with ``output.figures: false``. Drawing never stops a run: any failure is logged as a
    warning on the ``ptyrad_core`` logger.
    """

    @hookimpl
    def ptyrad_output_files(self, run):
        return report_files(run.output_dir) if getattr(run.config.output, "figures", True) else []

    @hookimpl
    def ptyrad_on_save(self, run, path, iteration):
        if not getattr(run.config.output, "figures", True):
            return
        try:
            report = write_report(path, run.output_dir)
        except Exception as exc:  # a figure must never end a reconstruction
            log.warning("report not written at iteration %d: %s: %s", iteration, type(exc).__name__, exc)
            return
        log.info("report %s at iteration %d", report, iteration)


def make_plugin() -> FigureObserver:
    """A fresh observer for one plugin manager."""
    return FigureObserver()
