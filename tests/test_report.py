"""Figures and report.html: drawn from a real result file, checked as files, as HTML and in Chromium."""

from __future__ import annotations

import copy
import logging
import re
import shutil
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import numpy as np
import pytest
from conftest import BASE_CONFIG, build_run

from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.engine.results import read_result
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core.observers import figures, report
from ptyrad_core.observers.figures import FIGURES
from ptyrad_core.observers.report import FigureObserver, write_report

CHROMIUM = Path("/usr/bin/chromium")
EVIL = "<script>alert(1)</script>"  # becomes two folders: '<script>alert(1)<' / 'script>'
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(config: dict) -> Reconstruction:
    """A Reconstruction whose plugin manager has the figure observer (inline until the kernel registers
    it)."""
    from ptyrad_core.kernel.plugin_manager import core_observers

    cfg = build_config(config)
    registered = any(isinstance(o, FigureObserver) for o in core_observers().values())
    pm = get_plugin_manager(
        cfg.plugins.modules,
        cfg.plugins.disable,
        base_dir=cfg.origin.folder,
        inline=[] if registered else [FigureObserver()],
    )
    return build_run(cfg, pm=pm)


def small_config(out: Path, **sections) -> dict:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["output"] = {"dir": str(out)}
    cfg.update(copy.deepcopy(sections))
    return cfg


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """A 2-iteration run (2 probe modes, 2 object modes, 2 slices, per-position tilts, position
    refinement) saving every iteration, with the report.html iteration recorded at each observer call."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = small_config(
        tmp / EVIL,
        model={
            "probe": {"modes": 2},
            "object": {"modes": 2, "phase_noise": 0.01, "slices": 2, "slice_thickness_A": 3.905},
            "tilts": {"mode": "per_position"},
        },
        update={"positions": {"lr": 1e-3}, "tilts": {"lr": 1e-2}},
    )
    cfg["output"]["save_every"] = 1
    seen = []
    real = report.write_report

    def spy(path, out_dir=None):
        page = real(path, out_dir)
        seen.append((Path(out_dir), int(re.search(r'data-iteration="(\d+)"', page.read_text()).group(1))))
        return page

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "write_report", spy)
        run = make_run(cfg).run()
    return SimpleNamespace(run=run, seen=seen, tmp=tmp)


@pytest.fixture(scope="module")
def written(observed):
    """write_report called directly on the run's result file, into a separate folder."""
    out = observed.tmp / "report"
    page = write_report(observed.run.result_path, out)
    return SimpleNamespace(
        page=page,
        out=out,
        html=page.read_text(encoding="utf-8"),
        result=read_result(observed.run.result_path),
    )


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


# --------------------------------------------------------------------------------------------
# the files
# --------------------------------------------------------------------------------------------


def test_every_figure_is_a_sensible_png(written):
    fig_dir = written.out / "figures"
    assert sorted(p.name for p in fig_dir.iterdir()) == sorted(FIGURES)  # no temporary files left
    for name in FIGURES:
        path = fig_dir / name
        w, h = png_size(path)
        assert 300 <= w <= 2500 and 250 <= h <= 2500, (name, w, h)
        assert 5_000 < path.stat().st_size < 1_000_000, name
        img = matplotlib.image.imread(path)
        assert img.shape[:2] == (h, w) and img.std() > 0.01, name  # decodes, and is not blank


def test_html_references_exactly_the_figures_and_escapes(written):
    html = written.html
    assert written.page == written.out / "report.html"
    assert not [p for p in written.out.iterdir() if p.name.startswith(".")]  # atomic write left nothing
    srcs = re.findall(r'<img src="([^"]*)"', html)
    assert sorted(srcs) == sorted(f"figures/{n}" for n in FIGURES)
    assert all((written.out / s).is_file() for s in srcs)
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<link" not in html  # self-contained
    # the output folder (in the header's result path and in the config) is escaped everywhere
    assert EVIL not in html and "alert(1)<" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2
    assert html.count("<script>") == 1  # only the image-counting script
    attrs = written.result["attrs"]
    for text in (
        attrs["data_sha256"],
        attrs["created"],
        attrs["versions"]["torch"],
        "core.progress",
        "loader_hdf5",
    ):
        assert text in html
    assert "<pre>" in html and "phase_noise: 0.01" in html


def test_summary_and_timing_tables(written):
    html, r = written.html, written.result
    times = r["history/time_s"]
    assert len(times) == 2
    summary = html[html.index('<table id="timing-summary">') :]
    summary = summary[: summary.index("</table>")]
    for v in (times.min(), np.median(times), times.max(), times.sum()):
        assert f">{v:.4g}<" in summary
    rows = html[html.index('id="timing-per-iteration"') :]
    rows = rows[: rows.index("</div>")]
    assert rows.count("<tr>") == 3 and ">1<" in rows and ">2<" in rows  # header + one row per iteration
    assert f"{r['history/loss_terms/gaussian'][-1]:.6g}" in html  # final loss per term
    assert "2 x 2 x 80 x 80" in html and "2 x 64 x 64" in html and "0.19525 \u00c5" in html
    assert f"{np.median(times):.4g} s" in html


# --------------------------------------------------------------------------------------------
# in a browser
# --------------------------------------------------------------------------------------------


def images_loaded(page: Path, tmp: Path) -> tuple[int, int]:
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:  # e.g. an unescaped alert() blocks the page
        pytest.fail(f"Chromium did not finish rendering {page} within 60 s")
    m = re.search(r'data-images-loaded="(\d+)/(\d+)"', out.stdout)
    assert m, (
        f"no data-images-loaded in Chromium's DOM (rc {out.returncode}): "
        f"{out.stdout[:300]!r} {out.stderr[-500:]!r}"
    )
    return int(m.group(1)), int(m.group(2))


@pytest.mark.slow  # two Chromium processes
@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium not installed (apt-get install -y chromium)"
)
def test_report_renders_in_chromium(written, tmp_path):
    site = tmp_path / "site<&>"  # a folder name that must be URL-encoded
    shutil.copytree(written.out, site)
    assert images_loaded(site / "report.html", tmp_path) == (len(FIGURES), len(FIGURES))
    (site / "figures" / "probe_modes.png").unlink()
    assert images_loaded(site / "report.html", tmp_path) == (len(FIGURES) - 1, len(FIGURES))


# --------------------------------------------------------------------------------------------
# the observer
# --------------------------------------------------------------------------------------------


def test_observer_writes_the_report_at_every_save(observed):
    run = observed.run
    assert observed.seen == [(run.output_dir, 1), (run.output_dir, 2)]
    html = (run.output_dir / "report.html").read_text(encoding="utf-8")
    assert 'data-iteration="2"' in html
    assert sorted(p.name for p in (run.output_dir / "figures").iterdir()) == sorted(FIGURES)


def test_observer_failure_only_logs_a_warning(tmp_path, monkeypatch, caplog):
    def broken(result, out_dir, strict=False):
        raise RuntimeError("no figures today")

    monkeypatch.setattr(figures, "draw_figures", broken)
    cfg = small_config(tmp_path / "out")
    cfg["recon"]["iterations"] = 1
    with caplog.at_level(logging.WARNING, logger="ptyrad_core"):
        run = make_run(cfg).run()
    assert run.iteration == 1 and run.result_path.is_file()
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "no figures today" in r.getMessage()
    ]
    assert len(warnings) == 1 and "RuntimeError" in warnings[0].getMessage()
    assert not (run.output_dir / "report.html").exists()


def test_observer_respects_output_figures_false(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(report, "write_report", lambda *a: calls.append(a))
    run = SimpleNamespace(config=SimpleNamespace(output=SimpleNamespace(figures=False)), output_dir=tmp_path)
    FigureObserver().ptyrad_on_save(run=run, path=tmp_path / "result.h5", iteration=3)
    assert calls == []
    run.config.output = SimpleNamespace()  # a config from before the switch existed: on
    FigureObserver().ptyrad_on_save(run=run, path=tmp_path / "result.h5", iteration=3)
    assert calls == [(tmp_path / "result.h5", tmp_path)]


# --------------------------------------------------------------------------------------------
# figure variants and failures
# --------------------------------------------------------------------------------------------


def test_one_failing_figure_is_left_out(written, tmp_path, monkeypatch, caplog):
    def broken(ctx):
        raise ValueError("bad tilts")

    monkeypatch.setattr(figures, "DRAW", {"loss.png": figures.fig_loss, "tilts.png": broken})
    (tmp_path / "tilts.png").write_bytes(b"stale")
    with caplog.at_level(logging.WARNING, logger="ptyrad_core"):
        paths = figures.draw_figures(written.result, tmp_path)
    assert paths == [tmp_path / "loss.png"] and not (tmp_path / "tilts.png").exists()
    assert any("tilts.png" in r.getMessage() and "bad tilts" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="bad tilts"):
        figures.draw_figures(written.result, tmp_path, strict=True)


def test_global_tilt_unrastered_scan_and_no_refinement(written, tmp_path):
    r = dict(written.result)
    r["positions/refined_px"] = r["positions/nominal_px"].copy()
    r["tilts_mrad"] = np.array([[1.5, -2.0]])
    ctx = figures._Ctx(r)
    fig = figures.fig_tilts(ctx)
    assert "t_y = 1.5 mrad" in "".join(t.get_text() for t in fig.axes[0].texts)
    assert "no refinement" in figures.fig_positions(ctx).axes[0].get_title()
    r["tilts_mrad"] = written.result["tilts_mrad"]
    r["attrs"] = dict(r["attrs"], config=dict(r["attrs"]["config"], scan={"n_slow": None, "n_fast": None}))
    fig = figures.fig_tilts(figures._Ctx(r))
    assert "not a raster" in fig.get_suptitle()
    assert png_size(figures._save(fig, tmp_path / "tilts.png"))[0] > 300
