"""Held-out validation (issue 17) in what the user sees: loss.png, report.html, ``ptyrad-core show``
and ``load_result`` (the ``heldout`` tune objective: tests/test_tune.py).

The views are tested on result files of a real tiny run whose held-out history and ``validation``
group are written here with h5py (the values chosen so that the best and the stop are known), and
on the same file without them (a file from before held-out validation).
"""

from __future__ import annotations

import copy
import re
import shutil
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from conftest import BASE_CONFIG, build_run
from rich.console import Console

from ptyrad_core.apps.result_view import load_result
from ptyrad_core.apps.show import summary
from ptyrad_core.engine.results import read_result
from ptyrad_core.observers import figures
from ptyrad_core.observers.report import write_report

#: a held-out curve that falls, is not evaluated once (NaN), then rises: best at iteration 3
HELDOUT = np.array([0.9, 0.5, 0.3, np.nan, 0.4, 0.45])
BEST, STOPPED = 3, 6


def set_validation(path, heldout=None, group=True, best=BEST, stopped=STOPPED, keep="best"):
    """Write (or, with ``heldout=None``, remove) ``history/heldout_loss`` and the ``validation``
    group in the result file ``path``, as the engine writes them."""
    with h5py.File(path, "r+") as f:
        for name in ("history/heldout_loss", "validation"):
            if name in f:
                del f[name]
        if "state_iteration" in f.attrs:
            del f.attrs["state_iteration"]
        if heldout is None:
            return path
        n = len(f["history/iteration"])
        assert n == len(heldout)
        f["history/heldout_loss"] = np.asarray(heldout, dtype=np.float64)
        if group:
            g = f.create_group("validation")
            g["pixel_u"] = np.random.default_rng(0).random(64 * 64)
            g["position_s"] = np.random.default_rng(1).random(64)
            for key, value in dict(
                fraction=0.05, seed=7, every=1, keep=keep, best_iteration=best,
                best_heldout_loss=float(heldout[best - 1]) if best > 0 else np.nan, stopped_at=stopped,
            ).items():  # fmt: skip
                g.attrs[key] = value
            f.attrs["state_iteration"] = best if keep == "best" else int(f.attrs["iteration"])
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``held``: a 6-iteration tiny run with the held-out curve above (best 3, stopped 6); ``old``:
    the same file without any held-out data (as written before issue 17)."""
    tmp = tmp_path_factory.mktemp("heldout_views")
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["recon"]["iterations"] = len(HELDOUT)
    cfg["output"] = {"dir": str(tmp / "run"), "figures": False, "log_file": False}
    run = build_run(cfg).run()
    held = set_validation(shutil.copy(run.result_path, tmp / "held.h5"), HELDOUT)
    old = set_validation(shutil.copy(run.result_path, tmp / "old.h5"), None)
    return SimpleNamespace(held=held, old=old, tmp=tmp)


def result_dict(path):
    return figures.with_validation(read_result(path), path)


# -- what the file says ------------------------------------------------------------------------


def test_heldout_info_reads_the_curve_best_and_stop(files):
    info = figures.heldout_info(result_dict(files.held))
    np.testing.assert_array_equal(info["heldout"], HELDOUT)
    assert (
        info["best_iteration"] == BEST and info["stopped_at"] == STOPPED and info["state_iteration"] == BEST
    )
    assert info["best_heldout_loss"] == pytest.approx(np.nanmin(HELDOUT))
    assert info["final"] == HELDOUT[-1] and info["fraction"] == pytest.approx(0.05) and info["keep"] == "best"
    assert figures.heldout_info(result_dict(files.old)) is None


def test_without_the_group_the_best_is_the_minimum_of_the_curve(files):
    path = set_validation(
        shutil.copy(files.held, files.tmp / "nogroup.h5"), HELDOUT[::-1].copy(), group=False
    )
    info = figures.heldout_info(result_dict(path))
    k = int(np.nanargmin(HELDOUT[::-1]))
    assert info["best_iteration"] == k + 1 and info["stopped_at"] is None and info["fraction"] is None


def test_an_all_nan_curve_is_no_curve(files):
    path = set_validation(shutil.copy(files.held, files.tmp / "nan.h5"), np.full(len(HELDOUT), np.nan))
    assert figures.heldout_info(result_dict(path)) is None


# -- loss.png ----------------------------------------------------------------------------------


def test_loss_figure_draws_the_heldout_curve_beside_the_training_loss(files):
    d = result_dict(files.held)
    fig = figures.fig_loss(figures._Ctx(d))
    assert len(fig.axes) == 2
    ax = fig.axes[1]
    by_label = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
    ok = np.isfinite(HELDOUT)
    np.testing.assert_allclose(by_label["held-out"].get_ydata(), HELDOUT[ok])
    np.testing.assert_array_equal(by_label["held-out"].get_xdata(), d["history/iteration"][ok])
    np.testing.assert_allclose(by_label["training"].get_ydata(), d["history/loss"])
    assert list(by_label["best held-out: iteration 3"].get_xdata()) == [BEST, BEST]
    assert list(by_label["stopped early: iteration 6"].get_xdata()) == [STOPPED, STOPPED]
    assert len(figures.fig_loss(figures._Ctx(result_dict(files.old))).axes) == 1


# -- report.html -------------------------------------------------------------------------------


def polyline_points(html: str, cls: str) -> np.ndarray:
    m = re.search(rf'<polyline class="{cls}"[^>]* points="([^"]*)"', html)
    assert m, cls
    return np.array([[float(v) for v in p.split(",")] for p in m.group(1).split()])


def test_report_has_the_heldout_curve_and_marks_best_and_stop(files):
    page = write_report(files.held, files.tmp / "report_held")
    html = page.read_text(encoding="utf-8")
    assert 'id="loss-curves"' in html
    assert f'data-best-iteration="{BEST}"' in html and f'data-stopped-at="{STOPPED}"' in html
    held = polyline_points(html, "heldout")
    train = polyline_points(html, "training")
    assert len(held) == np.isfinite(HELDOUT).sum() and len(train) == len(HELDOUT)
    # SVG y grows downwards: the best held-out point is the lowest on the page of the held-out curve
    assert np.argmax(held[:, 1]) == int(np.nanargmin(HELDOUT[np.isfinite(HELDOUT)]))
    best_x = float(re.search(r'<line class="best" data-iteration="3" x1="([\d.]+)"', html).group(1))
    assert best_x == pytest.approx(held[np.argmax(held[:, 1]), 0], abs=0.1)
    assert re.search(r'<line class="stopped" data-iteration="6"', html)
    stop = "stopped at iteration 6: no state as good as the held-out minimum (iteration 3) since iteration 3"
    assert stop in html
    assert "iteration 3 (the held-out minimum" in html
    table = html[html.index('id="timing-per-iteration"') :]
    assert "<th>held-out</th>" in table[: table.index("</tr>")]
    assert (files.tmp / "report_held" / "figures" / "loss.png").is_file()


def test_report_of_an_old_file_has_no_heldout_curve(files):
    html = write_report(files.old, files.tmp / "report_old").read_text(encoding="utf-8")
    assert "loss-curves" not in html and "data-best-iteration" not in html
    assert (
        "<th>held-out</th>" not in html
        and "held-out loss, final" not in html
        and "<th>early stop" not in html
    )
    assert (files.tmp / "report_old" / "figures" / "loss.png").is_file()


# -- ptyrad-core show --------------------------------------------------------------------------


def render(renderable) -> str:
    console = Console(record=True, width=200)
    console.print(renderable)
    return console.export_text()


def test_show_names_heldout_loss_best_and_stop(files):
    text = render(summary(files.held))
    final = f"{HELDOUT[-1]:.6g} (best {np.nanmin(HELDOUT):.6g} at iteration {BEST})"
    assert re.search(rf"held-out loss +│ {re.escape(final)}", text)
    assert "5% of the pixels held out" in text
    assert (
        f"stopped at iteration {STOPPED}: no state as good as the held-out minimum (iteration {BEST}) "
        f"since iteration {BEST}" in text
    )
    assert f"iteration {BEST} (the held-out minimum)" in text
    old = render(summary(files.old))
    assert "held-out" not in old and "early stop" not in old and "final loss" in old


# -- load_result -------------------------------------------------------------------------------


def test_result_has_heldout_loss_best_and_stop(files):
    r = load_result(files.held)
    np.testing.assert_array_equal(r.heldout_loss, HELDOUT)
    assert r.best_iteration == BEST and r.stopped_at == STOPPED and r.state_iteration == BEST
    assert r.best_heldout_loss == pytest.approx(np.nanmin(HELDOUT)) and r.validation["keep"] == "best"
    assert "best held-out loss" in repr(r)
    assert len(r.plot_loss().axes) == 2
    old = load_result(files.old)
    assert old.heldout_loss.shape == (0,) and old.best_iteration is None and old.stopped_at is None
    assert old.state_iteration == old.iteration and old.validation == {}
    assert len(old.plot_loss().axes) == 1


# -- end to end --------------------------------------------------------------------------------


def test_a_run_with_validation_shows_and_reports_its_heldout_curve(tmp_path):
    """A tiny run holding 10 % of the pixels out: its held-out history reaches load_result, show and
    report.html (curve, best iteration = the minimum of the curve with keep: best)."""
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["recon"].update(iterations=3, validation={"fraction": 0.1})
    cfg["output"] = {"dir": str(tmp_path / "run"), "figures": False, "log_file": False}
    run = build_run(cfg).run()
    curve = np.asarray(run.history["heldout_loss"], dtype=np.float64)
    assert len(curve) == 3 and np.isfinite(curve).all()
    r = load_result(run.result_path)
    np.testing.assert_allclose(r.heldout_loss, curve)
    best = int(np.asarray(run.history["iteration"])[np.argmin(curve)])
    assert r.best_iteration == best and r.state_iteration == best
    html = write_report(run.result_path, tmp_path / "report").read_text(encoding="utf-8")
    assert len(polyline_points(html, "heldout")) == 3 and f'data-best-iteration="{best}"' in html
    assert re.search(r"held-out loss +│", render(summary(run.result_path)))
