"""Mini-batch grouping (ptyrad_core.setup.scan.make_batches): farthest-point sampling against the others.

Each check can fail: a partition that loses or repeats a position, batches no farther apart
than random ones, or a result that depends on anything but the positions and the generator.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptyrad_core.setup import scan


def min_intra_distance(pos: np.ndarray, batch: np.ndarray) -> float:
    """The smallest distance between two positions of one batch."""
    p = pos[batch]
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    d[np.diag_indices(len(p))] = np.inf
    return float(d.min())


def batches(pos, mode, seed=0, batch_size=32, indices=None):
    idx = np.arange(len(pos)) if indices is None else indices
    return scan.make_batches(pos, idx, batch_size, mode, np.random.default_rng([seed, 1]))


RASTER = scan.raster_positions(24, 24, 2.05)  # sto_small's scan: 24 x 24 positions 2.05 px apart


@pytest.mark.parametrize("indices", [None, np.arange(0, 576, 3)])
def test_fps_uses_every_position_exactly_once(indices):
    out = batches(RASTER, "fps", indices=indices)
    want = np.arange(576) if indices is None else indices
    flat = np.concatenate(out)
    assert len(flat) == len(want) and np.array_equal(np.sort(flat), np.sort(want))
    sizes = [len(b) for b in out]
    assert len(out) == len(want) // 32 and max(sizes) - min(sizes) <= 1


def test_fps_batches_are_farther_apart_than_random_and_spread():
    fps = [min_intra_distance(RASTER, b) for b in batches(RASTER, "fps")]
    spread = [min_intra_distance(RASTER, b) for b in batches(RASTER, "spread")]
    rand = [min_intra_distance(RASTER, b) for b in batches(RASTER, "random")]
    # random batches of 32 among 576 raster positions hold neighbours (one step, or a diagonal);
    # fps keeps every pair of a batch at least two steps apart, in every batch
    assert np.median(rand) == pytest.approx(2.05) and max(rand) < 2 * 2.05
    assert min(fps) >= 2 * 2.05 - 1e-9
    assert min(fps) > max(rand) and np.median(fps) > np.median(spread)


def test_fps_approaches_the_ideal_spacing_on_a_random_scan():
    """32 points spread evenly over an L x L square are about L / sqrt(32) apart; fps gets close, random
    does not."""
    rng = np.random.default_rng(5)
    pos = rng.uniform(0, 100, (1024, 2))
    fps = np.median([min_intra_distance(pos, b) for b in batches(pos, "fps")])
    rand = np.median([min_intra_distance(pos, b) for b in batches(pos, "random")])
    assert fps > 0.6 * 100 / np.sqrt(32) > 3 * rand


def test_fps_is_deterministic_given_the_seed():
    a, b = batches(RASTER, "fps", seed=3), batches(RASTER, "fps", seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = batches(RASTER, "fps", seed=4)
    assert not all(
        np.array_equal(x, y) for x, y in zip(a, c, strict=True)
    )  # the seed chooses the first position


def test_fps_degenerate_sizes():
    pos = RASTER[:10]
    one = batches(pos, "fps", batch_size=32)  # fewer positions than a batch: one batch of all
    assert len(one) == 1 and np.array_equal(np.sort(one[0]), np.arange(10))
    singles = batches(pos, "fps", batch_size=1)
    assert sorted(int(b[0]) for b in singles) == list(range(10)) and all(len(b) == 1 for b in singles)


def test_fps_is_a_config_value(tiny_config):
    from ptyrad_core.kernel.config import build_config

    cfg = tiny_config()
    cfg["recon"]["grouping"] = "fps"
    assert build_config(cfg).recon.grouping == "fps"
    with pytest.raises(ValueError, match="unknown grouping"):
        scan.make_batches(RASTER, np.arange(576), 32, "farthest", np.random.default_rng(0))


def test_a_run_with_fps_batches(tiny_config):
    """recon.grouping: fps through the engine: its batches are the fps partition of the nominal positions."""
    from conftest import build_run

    cfg = tiny_config()
    cfg["recon"].update(grouping="fps", iterations=1, batch_size=16)
    cfg["output"]["log_file"] = False
    run = build_run(cfg)
    nominal = run.model.refined_positions().detach().double().numpy()
    got = run.batches()
    assert sorted(np.concatenate(got).tolist()) == list(range(64)) and len(got) == 4
    want = scan.make_batches(nominal, np.arange(64), 16, "fps", np.random.default_rng([0, 1]))
    assert sorted(map(tuple, map(sorted, got))) == sorted(map(tuple, map(sorted, want)))
    run.run()
    assert np.isfinite(run.history["loss"][-1])
