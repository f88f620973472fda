"""Held-out validation (issue 17): the split of detector pixels, the masked training loss, the
held-out loss, its history and result-file records, resume, early stopping and the state kept."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from conftest import build_run

from ptyrad_core.engine import loop
from ptyrad_core.engine.heldout import (
    GROUPS,
    STATE_NAMES,
    CountDeviance,
    Scorer,
    Split,
    heldout_loss,
    tied,
    train_meas,
)
from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.errors import ConfigError, DataError
from ptyrad_core.kernel.hookspecs import hookimpl
from ptyrad_core_plugins.losses.gaussian import GaussianLoss
from ptyrad_core_plugins.losses.poisson import PoissonLoss

# -- the split ---------------------------------------------------------------------------------


def test_split_is_deterministic_and_holds_out_the_fraction_everywhere():
    # every position holds out exactly K = round(f M) pixels; each pixel K N / M positions (+-1)
    fraction, n, shape = 0.1, 50, (12, 10)
    split = Split.make(7, fraction, n, shape)
    again = Split.make(7, fraction, n, shape)
    other = Split.make(8, fraction, n, shape)
    np.testing.assert_array_equal(split.pixel_u, again.pixel_u)
    np.testing.assert_array_equal(split.position_s, again.position_s)
    assert not np.array_equal(split.pixel_u, other.pixel_u)

    k = split.held_per_position
    assert k == round(fraction * shape[0] * shape[1]) == 12
    mask = split.mask_numpy(np.arange(n))  # (N, My, Mx)
    per_position = mask.reshape(n, -1).sum(1)
    per_pixel = mask.reshape(n, -1).sum(0)
    assert np.all(per_position == k), per_position
    assert np.all(np.abs(per_pixel - k * n / (shape[0] * shape[1])) <= 1), per_pixel
    # a different subset at every position, and every pixel held out somewhere
    assert len({m.tobytes() for m in mask}) == n
    assert per_pixel.min() > 0
    # the device mask and the batch's pixel indices are the definition's
    idx = torch.tensor([3, 0, 49, 3])
    np.testing.assert_array_equal(split.mask(idx).numpy(), split.mask_numpy(idx.numpy()))
    pixels = split.pixels(idx)
    assert pixels.shape == (4, k) and pixels.dtype == torch.int64
    for row, n_ in zip(pixels.numpy(), idx.numpy()):
        assert len(set(row)) == k  # K distinct pixels
        np.testing.assert_array_equal(np.sort(row), np.flatnonzero(mask[n_].reshape(-1)))


def test_the_cached_whole_scan_mask_equals_the_per_batch_definition(monkeypatch):
    """Below HELDOUT_MASK_CACHE_BYTES a batch indexes the whole scan's mask (built once, in chunks); above
    it each batch builds its own: both are the definition."""
    from ptyrad_core.setup import memory

    split = Split.make(3, 0.1, 50, (12, 10))
    idx = torch.tensor([7, 0, 49, 7, 23])
    cached = split.mask(idx)
    assert any(isinstance(k, tuple) for k in split._device)  # the whole mask is kept
    monkeypatch.setattr(memory, "HELDOUT_MASK_CACHE_BYTES", 0)
    fresh = Split.make(3, 0.1, 50, (12, 10))
    assert torch.equal(fresh.mask(idx), cached)
    assert not any(isinstance(k, tuple) for k in fresh._device)  # nothing kept above the limit
    assert np.array_equal(cached.numpy(), split.mask_numpy(idx.numpy()))


def test_a_tiny_fraction_still_holds_out_one_pixel():
    split = Split.make(0, 0.001, 5, (4, 4))
    assert split.held_per_position == 1
    assert split.mask_numpy(np.arange(5)).reshape(5, -1).sum(1).tolist() == [1] * 5


def test_split_round_trips_through_a_group(tmp_path):
    split = Split.make(1, 0.05, 9, (4, 6))
    with h5py.File(tmp_path / "s.h5", "w") as f:
        split.write(f.create_group("validation"))
    with h5py.File(tmp_path / "s.h5", "r") as f:
        back = Split.read(f["validation"])
    assert (back.fraction, back.seed, back.shape) == (split.fraction, split.seed, split.shape)
    np.testing.assert_array_equal(back.mask_numpy(np.arange(9)), split.mask_numpy(np.arange(9)))


# -- the training loss and the held-out loss -------------------------------------------------------


def _patterns(seed=0, shape=(3, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    meas = torch.rand(shape, generator=g, dtype=torch.float64) * 10 + 0.5
    pred = meas * (1 + 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)).abs()
    return pred, meas


@pytest.mark.parametrize("name", ["poisson", "gaussian", "pacbed"])
def test_training_never_sees_a_held_out_count(name):
    """The training loss and its gradient are the same whatever the held-out counts are (the
    normalisations included); a kept count changes them. A pixel-wise term leaves the held-out
    pixels without residual, so without gradient (up to its eps)."""
    from ptyrad_core_plugins.losses.pacbed import PacbedLoss

    term = {"poisson": PoissonLoss, "gaussian": GaussianLoss, "pacbed": PacbedLoss}[name]
    term = term(term.Options())
    pred, meas = _patterns(shape=(4, 8, 8))
    split = Split.make(0, 0.2, 4, (8, 8))
    idx = torch.arange(4)
    pixels, mask = split.pixels(idx), split.mask(idx)

    def loss_and_grad(m):
        x = pred.clone().requires_grad_(True)
        loss = term(x, train_meas(x, m.clone(), pixels), None)
        loss.backward()
        return loss.detach(), x.grad

    loss, grad = loss_and_grad(meas)
    held_changed = torch.where(mask, meas * 7.0, meas)
    assert (held_changed != meas).sum() == mask.sum() > 0
    loss2, grad2 = loss_and_grad(held_changed)
    assert torch.equal(loss, loss2) and torch.equal(grad, grad2)
    kept_changed = torch.where(mask, meas, meas * 1.1)
    assert not torch.equal(loss_and_grad(kept_changed)[0], loss)
    if term.pixelwise:
        assert grad[mask].abs().max() <= 1e-5 * grad[~mask].abs().max()


def test_train_meas_writes_in_place_only_when_asked():
    pred, meas = _patterns(shape=(3, 8, 8))
    split = Split.make(1, 0.2, 3, (8, 8))
    idx = torch.arange(3)
    pixels, mask = split.pixels(idx), split.mask(idx)
    before = meas.clone()
    out = train_meas(pred, meas, pixels)
    assert torch.equal(meas, before) and out is not meas
    torch.testing.assert_close(out, torch.where(mask, pred, meas), rtol=0, atol=0)
    same = train_meas(pred, meas, pixels, inplace=True)
    assert same is meas and torch.equal(meas, out)


def _gaussian_np(x, m, p=0.5, eps=1e-10):
    return np.sqrt(np.mean(((x + eps) ** p - m**p) ** 2)) / np.mean(m**p)


def _poisson_np(x, m, p=1.0, eps=1e-6):
    return -np.mean(m**p * np.log(x**p + eps) - x**p) / np.mean(m**p)


def _mask(seed, fraction, shape=(3, 8, 8)):
    return Split.make(seed, fraction, shape[0], shape[1:]).mask(torch.arange(shape[0]))


def test_held_out_loss_of_pixelwise_terms_is_the_term_on_the_held_out_pixels():
    pred, meas = _patterns(1)
    fraction = 0.25
    mask = _mask(3, fraction)
    stack = [
        ("gaussian", 1.0, GaussianLoss(GaussianLoss.Options())),
        ("poisson", 0.5, PoissonLoss(PoissonLoss.Options())),
    ]
    got = float(heldout_loss(stack, pred, meas, mask, None, fraction))
    p, m, k = pred.numpy(), meas.numpy(), mask.numpy()
    # the plain formulas over the held-out pixels of the batch: the training loss's scale
    expected = _gaussian_np(p[k], m[k]) + 0.5 * _poisson_np(p[k], m[k])
    assert got == pytest.approx(expected, rel=1e-10)
    # only the held-out pixels count: changing the prediction elsewhere changes nothing
    elsewhere = torch.where(mask, pred, pred * 3)
    assert float(heldout_loss(stack, elsewhere, meas, mask, None, fraction)) == pytest.approx(got, rel=1e-12)
    # a perfect prediction: the Gaussian term is 0, the Poisson term its minimum
    perfect = float(heldout_loss(stack, meas.clone(), meas, mask, None, fraction))
    assert perfect == pytest.approx(0.5 * _poisson_np(m[k], m[k]), rel=1e-10)
    assert got > perfect


def test_held_out_loss_of_a_term_that_reads_whole_patterns_is_what_the_held_out_pixels_add():
    """The PACBED term compares batch-averaged patterns: not pixel-wise, so it is evaluated on
    whole patterns with the prediction at held-out pixels only, less its value at a perfect
    prediction, per held-out fraction."""
    from ptyrad_core_plugins.losses.pacbed import PacbedLoss

    pred, meas = _patterns(2)
    fraction = 0.25
    mask = _mask(4, fraction)
    pacbed = PacbedLoss(PacbedLoss.Options())
    assert not pacbed.pixelwise
    got = float(heldout_loss([("pacbed", 2.0, pacbed)], pred, meas, mask, None, fraction))
    p, m, k = pred.numpy(), meas.numpy(), mask.numpy()

    def pacbed_np(x):
        return np.sqrt(np.mean(((x + 1e-10).mean(0) ** 0.2 - m.mean(0) ** 0.2) ** 2)) / np.mean(m**0.2)

    expected = 2.0 * (pacbed_np(np.where(k, p, m)) - pacbed_np(m)) / fraction
    assert got == pytest.approx(expected, rel=1e-8) and got > 0
    assert float(heldout_loss([("pacbed", 2.0, pacbed)], meas.clone(), meas, mask, None, fraction)) == (
        pytest.approx(0, abs=1e-12)
    )


def test_the_iterations_held_out_loss_is_the_stack_on_every_held_out_pixel_whatever_the_batches():
    """:class:`Scorer` keeps each batch's held-out pixels and evaluates a pixel-wise term once on
    those of the whole scan: the value is the formula over all held-out pixels and the same for
    any partition into batches (a per-batch mean would change with it); a whole-pattern term is
    the mean of its per-batch values."""
    from ptyrad_core_plugins.losses.pacbed import PacbedLoss

    n, fraction = 12, 0.2
    pred, meas = _patterns(5, shape=(n, 8, 8))
    split = Split.make(2, fraction, n, (8, 8))
    gauss = [("gaussian", 1.5, GaussianLoss(GaussianLoss.Options()))]
    k = split.mask_numpy(np.arange(n))
    expected = 1.5 * _gaussian_np(pred.numpy()[k], meas.numpy()[k])

    def score(stack, partition):
        scorer = Scorer(stack, split)
        scorer.start()
        for part in partition:
            idx = torch.as_tensor(part)
            scorer.add(pred[idx], meas[idx], idx, split.mask(idx), None)
        return float(scorer.value(1, None))

    one = score(gauss, [np.arange(n)])
    assert one == pytest.approx(expected, rel=1e-10)
    shuffled = np.random.default_rng(0).permutation(n)
    assert score(gauss, [shuffled[:5], shuffled[5:9], shuffled[9:]]) == pytest.approx(one, rel=1e-12)
    # positions a batch plan left out are not scored
    part = np.arange(6)
    kp = split.mask_numpy(part)
    assert score(gauss, [part]) == pytest.approx(
        1.5 * _gaussian_np(pred.numpy()[part][kp], meas.numpy()[part][kp]), rel=1e-10
    )
    # a whole-pattern term: the mean over batches of its per-batch held-out value
    pac = [("pacbed", 1.0, PacbedLoss(PacbedLoss.Options()))]
    halves = [np.arange(6), np.arange(6, n)]
    per_batch = []
    for h in halves:
        idx = torch.as_tensor(h)
        per_batch.append(float(heldout_loss(pac, pred[idx], meas[idx], split.mask(idx), None, fraction)))
    assert score(pac, halves) == pytest.approx(np.mean(per_batch), rel=1e-12)
    # a streamed run (whole_scan=False) scores every term per batch, in memory of one batch
    streamed = Scorer(gauss, split, whole_scan=False)
    streamed.start()
    per_batch = []
    for h in halves:
        idx = torch.as_tensor(h)
        streamed.add(pred[idx], meas[idx], idx, split.mask(idx), None)
        per_batch.append(float(heldout_loss(gauss, pred[idx], meas[idx], split.mask(idx), None, fraction)))
    assert float(streamed.value(1, None)) == pytest.approx(np.mean(per_batch), rel=1e-12)
    assert streamed._pred is None
    # start() forgets the previous iteration
    scorer = Scorer(gauss, split)
    scorer.start()
    idx = torch.arange(n)
    scorer.add(pred * 2, meas, idx, split.mask(idx), None)
    scorer.start()
    scorer.add(pred, meas, idx, split.mask(idx), None)
    assert float(scorer.value(2, None)) == pytest.approx(one, rel=1e-12)


def _deviance_np(x, m):
    eps = 1e-6 * m.mean()
    xlogx = np.where(m > 0, m * np.log(np.where(m > 0, m, 1)), 0.0)
    return np.sum(x - m + xlogx - m * np.log(x + eps)) / m.sum()


def test_the_deviance_is_its_formula_for_any_scale_and_finite_at_zero_counts():
    pred, meas = _patterns(3, shape=(4, 1, 50))
    meas = torch.where(meas > 5, meas.round(), torch.zeros_like(meas))  # about half the pixels empty
    d = CountDeviance()
    assert float(d(pred, meas)) == pytest.approx(_deviance_np(pred.numpy(), meas.numpy()), rel=1e-12)
    # a detector that reports 0.37 units per electron gives the same score
    assert float(d(0.37 * pred, 0.37 * meas)) == pytest.approx(float(d(pred, meas)), rel=1e-9)
    assert float(d(meas, meas)) == pytest.approx(0.0, abs=1e-6)  # 0 where the prediction is the counts
    pred[0, 0, :5], meas[0, 0, :5] = 0.0, 0.0  # no count, nothing predicted: 0, not NaN
    assert np.isfinite(float(d(pred, meas)))
    assert float(d(pred, torch.zeros_like(meas))) == pytest.approx(float(pred.sum()))  # no counts at all


@pytest.mark.parametrize("expected", [0.05, 0.5, 5.0])
def test_the_deviance_ranks_predictions_by_the_expected_count_where_the_amplitude_misfit_does_not(expected):
    """Why the held-out pixels are scored with the deviance by default: over many Poisson draws,
    its mean is lowest for the prediction equal to the expected count, at any count rate; the
    amplitude misfit's is lowest below it where counts are few (it prefers too little scattering)."""
    counts = torch.poisson(
        torch.full((200_000,), expected, dtype=torch.float64), generator=torch.Generator().manual_seed(1)
    )
    factors = np.array([0.1, 0.25, 0.5, 0.8, 1.0, 1.25, 2.0])
    deviance = [float(CountDeviance()(torch.full_like(counts, f * expected), counts)) for f in factors]
    assert factors[int(np.argmin(deviance))] == 1.0
    amplitude = [
        float(((torch.full_like(counts, f * expected).sqrt() - counts.sqrt()) ** 2).mean()) for f in factors
    ]
    if expected < 1:
        assert factors[int(np.argmin(amplitude))] <= 0.5


def test_the_scorer_with_the_deviance_is_the_formula_on_the_held_out_pixels_whole_and_per_group():
    n = 40
    pred, meas = _patterns(9, shape=(n, 8, 8))
    meas = torch.poisson(meas / 4, generator=torch.Generator().manual_seed(2))
    split = Split.make(4, 0.2, n, (8, 8))
    scorer = Scorer([("deviance", 1.0, CountDeviance())], split)
    scorer.start()
    idx = torch.arange(n)
    scorer.add(pred, meas, idx, None, None)
    k = split.mask_numpy(np.arange(n))
    assert float(scorer.value(1, None)) == pytest.approx(
        _deviance_np(pred.numpy()[k], meas.numpy()[k]), rel=1e-10
    )
    groups = scorer.groups()
    assert scorer._vmap  # the deviance runs under vmap
    for g in range(GROUPS):
        members = np.arange(g, n, GROUPS)
        k = split.mask_numpy(members)
        expected = _deviance_np(pred.numpy()[members][k], meas.numpy()[members][k])
        assert groups[g] == pytest.approx(expected, rel=1e-10), g


def test_the_deviance_refuses_negative_measurements_in_one_line():
    pred, meas = _patterns(4, shape=(40, 8, 8))
    meas[3] -= 20  # as a detector stage that subtracts a background might leave them
    split = Split.make(4, 0.2, 40, (8, 8))
    idx = torch.arange(40)
    deviance = [("deviance", 1.0, CountDeviance())]
    for whole_scan in (True, False):  # scored over the scan, or per batch (streamed data)
        scorer = Scorer(deviance, split, whole_scan=whole_scan)
        scorer.start()
        with pytest.raises(DataError, match="recon.validation.score: 'deviance' scores counts") as info:
            scorer.add(pred, meas, idx, None, None)
        assert "\n" not in str(info.value) and "score: loss" in str(info.value)
    # the loss stack does not need counts
    scorer = Scorer([("gaussian", 1.0, GaussianLoss(GaussianLoss.Options()))], split)
    scorer.start()
    scorer.add(pred, meas.abs(), idx, None, None)


@pytest.mark.parametrize(
    "score, terms",
    [
        (None, ["deviance"]),
        ("loss", None),
        ([{"name": "poisson", "weight": 2.0}, {"name": "gaussian"}], ["poisson", "gaussian"]),
    ],
)
def test_the_score_never_changes_the_training_only_what_the_held_out_pixels_are_scored_with(
    tiny_config, score, terms
):
    base = build_run(_cfg(tiny_config, validation={"score": "loss"})).run()
    validation = {} if score is None else {"score": score}
    cfg = _cfg(tiny_config, validation=validation)
    cfg["output"]["dir"] += "-score"
    run = build_run(cfg)
    if terms is None:
        assert run.parts.score_terms is run.parts.loss_terms
    else:
        assert [label for label, _, _ in run.parts.score_terms] == terms
        if score is not None:
            assert [w for _, w, _ in run.parts.score_terms] == [2.0, 1.0]
            assert isinstance(run.parts.score_terms[0].term, PoissonLoss)
    run.run()
    assert run.history["loss"] == base.history["loss"]
    assert torch.equal(run.model.object_phase, base.model.object_phase)
    same = np.allclose(run.history["heldout_loss"], base.history["heldout_loss"], rtol=1e-12)
    assert same is (score == "loss")


# -- runs on the tiny data -------------------------------------------------------------------------


def _cfg(tiny_config, iterations=3, **recon):
    cfg = tiny_config()
    cfg["recon"].update(iterations=iterations, **recon)
    return cfg


def test_fraction_zero_is_the_run_without_masking(tiny_config, monkeypatch):
    # validation on with a mask that holds nothing out trains exactly as a run without masking
    monkeypatch.setattr(Split, "pixels", lambda self, idx: torch.zeros((len(idx), 0), dtype=torch.int64))

    class NoScore:  # nothing is held out, so there is nothing to score
        split = None

        def __init__(self, *args, **kwargs):
            pass

        def groups(self):
            return None

        def deferred_groups(self):
            return lambda: None

        def start(self):
            pass

        def add(self, *args):
            pass

        def value(self, *args):
            return torch.zeros(())

    monkeypatch.setattr(loop, "Scorer", NoScore)
    empty = build_run(_cfg(tiny_config, validation={"fraction": 0.05})).run()

    def fail(*args, **kwargs):
        raise AssertionError("no held-out code runs with fraction 0")

    monkeypatch.setattr(loop, "train_meas", fail)
    monkeypatch.setattr(loop, "Scorer", fail)
    off = build_run(_cfg(tiny_config, validation={"fraction": 0})).run()
    assert off.history["loss"] == empty.history["loss"]
    assert torch.equal(off.model.object_phase, empty.model.object_phase)
    assert "heldout_loss" not in off.history and off.split is None
    with h5py.File(off.result_path, "r") as f:
        assert "validation" not in f and "history/heldout_loss" not in f
        assert int(f.attrs["state_iteration"]) == 3


def test_a_run_reports_the_held_out_loss_and_resumes_to_the_same_end(tiny_config):
    cfg = _cfg(tiny_config, iterations=4)
    straight = build_run(cfg).run()
    held = straight.history["heldout_loss"]
    assert len(held) == 4 and all(np.isfinite(held)) and all(h > 0 for h in held)
    with h5py.File(straight.result_path, "r") as f:
        np.testing.assert_array_equal(f["history/heldout_loss"][()], held)
        np.testing.assert_array_equal(f["validation/pixel_u"][()], straight.split.pixel_u)
        np.testing.assert_array_equal(f["validation/position_s"][()], straight.split.position_s)
        assert f["validation"].attrs["fraction"] == 0.05
        assert int(f["validation"].attrs["best_iteration"]) == int(np.argmin(held)) + 1
        assert int(f.attrs["state_iteration"]) == int(np.argmin(held)) + 1
    log = (straight.output_dir / "run.log").read_text()
    assert f"held-out {held[-1]:.6g}" in log

    cfg["output"]["dir"] += "-part"
    first = build_run(cfg).run(2)
    resumed = build_run(cfg, resume=first.result_path)
    np.testing.assert_array_equal(resumed.split.pixel_u, straight.split.pixel_u)
    resumed.run()
    assert resumed.history["heldout_loss"] == held
    assert resumed.history["loss"] == straight.history["loss"]
    for name in STATE_NAMES:
        assert torch.equal(getattr(resumed.model, name), getattr(straight.model, name)), name
    assert resumed.tracker.best_iteration == straight.tracker.best_iteration
    with h5py.File(resumed.result_path, "r") as a, h5py.File(straight.result_path, "r") as b:
        for key in ("object/phase", "probe/modes", "validation/pixel_u", "validation/position_s"):
            np.testing.assert_array_equal(a[key][()], b[key][()], err_msg=key)


def test_a_resumed_run_keeps_the_files_split_whatever_the_config_says(tiny_config):
    cfg = _cfg(tiny_config, iterations=2)
    first = build_run(cfg).run(1)
    cfg["recon"]["validation"] = {"fraction": 0.2, "seed": 99}
    resumed = build_run(cfg, resume=first.result_path).run()
    np.testing.assert_array_equal(resumed.split.position_s, first.split.position_s)
    assert resumed.split.fraction == 0.05
    assert "the config's fraction 0.2 is not used" in (resumed.output_dir / "run.log").read_text()


@pytest.mark.parametrize(
    "score, loss, new_score, fresh",
    [
        ("loss", [{"name": "gaussian", "weight": 2.0}], "loss", True),  # another weight: another scale
        ("loss", [{"name": "gaussian", "options": {"dp_pow": 1.0}}], "loss", True),  # another option
        ("loss", [{"name": "gaussian"}], "loss", False),  # the same stack: the minimum goes on
        # the deviance does not depend on the loss stack: another weight keeps the minimum
        ("deviance", [{"name": "gaussian", "weight": 2.0}], "deviance", False),
        ("deviance", [{"name": "gaussian"}], "loss", True),  # another score
        ("deviance", [{"name": "gaussian"}], [{"name": "poisson"}], True),
    ],
)
def test_a_resume_with_another_score_scale_starts_the_minimum_afresh(
    tiny_config, score, loss, new_score, fresh
):
    """Before, a doubled weight left the file's minimum on the old scale: no later state was ever as
    good, patience stopped the run at once and keep: best kept the file's state."""
    cfg = _cfg(tiny_config, iterations=2, validation={"score": score})
    cfg["loss"] = [{"name": "gaussian"}]
    first = build_run(cfg).run()
    assert first.tracker.best_iteration == 2
    cfg = _cfg(tiny_config, iterations=4, stop={"patience": 1}, validation={"score": new_score})
    cfg["output"]["dir"] = str(first.output_dir)
    cfg["loss"] = loss
    resumed = build_run(cfg, resume=first.result_path)
    notes = " ".join(resumed.resume_notes)
    if fresh:
        assert resumed.tracker.best_loss is None and "start afresh at iteration 3" in notes
        resumed.run()
        assert resumed.tracker.best_iteration >= 3 and resumed.iteration == 4
    else:
        assert resumed.tracker.best_iteration == 2 and "afresh" not in notes


def test_a_file_from_before_the_score_option_was_scored_with_its_loss_stack():
    from ptyrad_core.engine.results import _score_stack

    old = {"loss": [{"name": "gaussian", "weight": 1.0}], "recon": {"validation": {"fraction": 0.05}}}
    loss = {**old, "recon": {"validation": {"fraction": 0.05, "score": "loss"}}}
    deviance = {**old, "recon": {"validation": {"fraction": 0.05, "score": "deviance"}}}
    assert _score_stack(old) == _score_stack(loss) != _score_stack(deviance)


def test_every_n_scores_every_nth_iteration(tiny_config):
    run = build_run(_cfg(tiny_config, iterations=4, validation={"every": 2})).run()
    held = np.asarray(run.history["heldout_loss"])
    assert np.isnan(held[[0, 2]]).all() and np.isfinite(held[[1, 3]]).all()


def _forced_curve(monkeypatch, curve, groups=None):
    """Make the held-out loss follow ``curve`` (and its per-group values ``groups``; none: the
    plain minimum decides) and record the parameters after every iteration."""
    states = {}
    original = Reconstruction.run_iteration

    def run_iteration(self, iteration):
        metrics = original(self, iteration)
        metrics["heldout_loss"] = curve[iteration - 1]
        metrics.pop("heldout_groups", None)
        self._deferred_groups = None  # the run's own (deferred) groups: not those of the forced curve
        if groups is not None:
            metrics["heldout_groups"] = groups[iteration - 1]
        states[iteration] = {n: getattr(self.model, n).detach().clone() for n in STATE_NAMES}
        return metrics

    monkeypatch.setattr(Reconstruction, "run_iteration", run_iteration)
    return states


CURVE = [1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9, 0.6, 0.5, 0.4]


@pytest.mark.parametrize("keep", ["best", "last"])
def test_early_stop_at_best_plus_patience_keeps_the_chosen_state(tiny_config, monkeypatch, keep):
    states = _forced_curve(monkeypatch, CURVE)
    cfg = _cfg(tiny_config, iterations=10, stop={"patience": 3, "keep": keep})
    run = build_run(cfg).run()  # an early stop is a normal end
    best = 3  # 0.7; then 3 iterations without an improvement
    assert run.iteration == best + 3 and run.tracker.stopped_at == best + 3
    assert run.tracker.best_iteration == best and run.history["heldout_loss"] == CURVE[: best + 3]
    kept = best if keep == "best" else best + 3
    with h5py.File(run.result_path, "r") as f:
        assert int(f.attrs["iteration"]) == 6 and int(f.attrs["state_iteration"]) == kept
        v = f["validation"].attrs
        assert (int(v["best_iteration"]), int(v["stopped_at"]), v["keep"]) == (best, 6, keep)
        assert float(v["best_heldout_loss"]) == 0.7
        np.testing.assert_array_equal(f["object/phase"][()], states[kept]["object_phase"].numpy())
        np.testing.assert_array_equal(f["object/amplitude"][()], states[kept]["object_amplitude"].numpy())
        np.testing.assert_array_equal(f["checkpoint/position_shifts_px"][()], states[6]["positions"].numpy())
        assert ("checkpoint/last_state" in f) == (keep == "best")
        if keep == "best":
            np.testing.assert_array_equal(
                f["validation/best_state/object_phase"][()], states[best]["object_phase"]
            )
    assert (
        "stopped early at iteration 6: no state as good as the held-out minimum (iteration 3) since "
        "iteration 3" in (run.output_dir / "run.log").read_text()
    )
    # the run keeps training from its last state; a resume continues from it too
    assert torch.equal(run.model.object_phase, states[6]["object_phase"])
    cfg["recon"]["iterations"] = 7
    resumed = build_run(cfg, resume=run.result_path)
    assert torch.equal(resumed.model.object_phase, states[6]["object_phase"])
    assert resumed.tracker.best_iteration == best


def test_tied_is_a_paired_test_of_the_group_differences():
    rng = np.random.default_rng(0)
    ref = 10 + rng.normal(size=GROUPS)
    noise = rng.normal(size=GROUPS)
    noise -= noise.mean()  # mean 0, sample std about 1: standard error about 1 / 4
    se = noise.std(ddof=1) / np.sqrt(GROUPS)
    assert tied(ref + 0.9 * se + noise, ref, 1.0)
    assert not tied(ref + 1.1 * se + noise, ref, 1.0)
    assert tied(ref + 1.9 * se + noise, ref, 2.0) and not tied(ref + 2.1 * se + noise, ref, 2.0)
    # the same mean difference with no spread is significant; a lower value is always tied
    assert not tied(ref + 1e-9, ref, 3.0) and tied(ref - 1.0 + noise, ref, 1.0)
    # no groups, another G, or tolerance 0: never tied (the plain minimum)
    assert not tied(None, ref, 1.0) and not tied(ref, None, 1.0) and not tied(ref[:4], ref, 1.0)
    assert not tied(ref + noise, ref, 0.0)


def test_tracker_keeps_the_latest_state_tied_with_the_minimum():
    rng = np.random.default_rng(1)
    base = 1.0 + 0.01 * rng.normal(size=GROUPS)
    noise = [0.01 * rng.normal(size=GROUPS) for _ in range(6)]
    noise = [n - n.mean() for n in noise]  # zero mean: the ties below are ties by construction
    # held-out per iteration: a minimum at 2, a tie at 3 (above it by noise), clearly worse at 4,
    # tied again at 5 (patience restarts), worse at 6
    groups = [base + 0.5, base, base + 0.001 + noise[2], base + 0.2, base + noise[4], base + 0.3]
    t = loop.Tracker()
    for it, g in enumerate(groups, start=1):
        value = float(np.mean(g))
        assert t.update(it, value, 0.0, None, g, 1.0) == (it in (1, 2, 3, 5)), it
    assert t.best_iteration == 2 and t.kept_iteration == 5 and t.since_best == 1
    np.testing.assert_array_equal(t.best_groups, groups[1])
    # tolerance 0 is the plain minimum
    t0 = loop.Tracker()
    for it, g in enumerate(groups, start=1):
        t0.update(it, float(np.mean(g)), 0.0, None, g, 0.0)
    assert t0.kept_iteration == t0.best_iteration == 2 and t0.since_best == 4


def test_the_tracker_evaluates_deferred_groups_only_when_it_compares():
    # the same curve as above, the groups handed over as callables that count their calls:
    # the same decisions, and a state's values are evaluated only when it is compared (every
    # state that is not a new minimum, and the minimum it is compared with), each at most once
    rng = np.random.default_rng(1)
    base = 1.0 + 0.01 * rng.normal(size=GROUPS)
    curve = [base + 0.5, base + 0.4, base, base + 0.001, base + 0.2, base - 0.1, base - 0.2]
    calls = [0] * len(curve)

    def deferred(i):
        def evaluate():
            calls[i] += 1
            return curve[i]

        return evaluate

    eager, lazy = loop.Tracker(), loop.Tracker()
    for it, g in enumerate(curve, start=1):
        value = float(np.mean(g))
        assert lazy.update(it, value, 0.0, None, deferred(it - 1), 1.0) == eager.update(
            it, value, 0.0, None, g, 1.0
        )
    assert (lazy.kept_iteration, lazy.since_best) == (eager.kept_iteration, eager.since_best) == (7, 0)
    # 1, 2: minima never compared; 3: the minimum compared at 4 and 5; 6, 7: minima, not yet compared
    assert calls == [0, 0, 1, 1, 1, 0, 0]
    np.testing.assert_array_equal(lazy.reference_groups(), curve[6])
    assert calls[6] == 1 and lazy.reference_groups() is lazy.best_groups and calls[6] == 1


def test_the_scorer_gives_the_stack_per_group_of_positions():
    n = 40
    pred, meas = _patterns(7, shape=(n, 8, 8))
    split = Split.make(3, 0.2, n, (8, 8))
    gauss = [("gaussian", 2.0, GaussianLoss(GaussianLoss.Options()))]
    scorer = Scorer(gauss, split)
    scorer.start()
    idx = torch.arange(n)
    scorer.add(pred, meas, idx, split.mask(idx), None)
    first = float(scorer.value(1, None))
    groups = scorer.groups()
    deferred = scorer.deferred_groups()
    assert groups is not None and groups.shape == (GROUPS,)
    for g in (0, 5, GROUPS - 1):
        members = np.arange(g, n, GROUPS)
        k = split.mask_numpy(members)
        expected = 2.0 * _gaussian_np(pred.numpy()[members][k], meas.numpy()[members][k])
        assert groups[g] == pytest.approx(expected, rel=1e-10), g
    # the deferred values are those of iteration 1's state, evaluated after iteration 2 has
    # overwritten the scorer's buffer with other predictions
    scorer.start()
    scorer.add(pred * 1.5, meas, idx, None, None)
    scorer.value(2, None)
    assert not np.allclose(scorer.groups(), groups)
    np.testing.assert_array_equal(deferred(), groups)
    # a run that has no use for them (tolerance 0, or keep last without patience) skips them
    skip = Scorer(gauss, split, groups=False)
    skip.start()
    skip.add(pred, meas, idx, split.mask(idx), None)
    assert float(skip.value(2, None)) == first
    assert skip.groups() is None and skip.deferred_groups()() is None
    # too few positions for 16 groups of two: no groups, the plain minimum decides
    few = Scorer(gauss, Split.make(3, 0.2, 2 * GROUPS - 1, (8, 8)))
    few.start()
    idx = torch.arange(2 * GROUPS - 1)
    few.add(pred[idx], meas[idx], idx, few.split.mask(idx), None)
    few.value(1, None)
    assert few.groups() is None


class _Unvectorisable(GaussianLoss):
    """The Gaussian term with a data-dependent branch (a Python bool of a tensor): vmap cannot run it."""

    def forward(self, pred, meas, batch):
        assert bool(meas.sum() > 0)
        return super().forward(pred, meas, batch)


@pytest.mark.parametrize("n", [48, 53])
def test_the_groups_are_the_same_vectorised_or_one_by_one(n):
    # the groups are evaluated under vmap where the stack allows it and one by one where it does
    # not: the same values, with equal groups (48 = 3 x 16) and with unequal ones (53)
    pred, meas = _patterns(11, shape=(n, 8, 8))
    split = Split.make(5, 0.2, n, (8, 8))
    idx = torch.arange(n)
    out = {}
    for name, cls in (("vmap", GaussianLoss), ("loop", _Unvectorisable)):
        scorer = Scorer([("gaussian", 1.5, cls(cls.Options()))], split)
        scorer.start()
        scorer.add(pred, meas, idx, None, None)
        scorer.value(1, None)
        out[name] = scorer.groups()
        assert scorer._vmap is (name == "vmap")  # the path taken is the one named
    np.testing.assert_allclose(out["vmap"], out["loop"], rtol=1e-12)
    for g in range(GROUPS):
        members = np.arange(g, n, GROUPS)
        k = split.mask_numpy(members)
        expected = 1.5 * _gaussian_np(pred.numpy()[members][k], meas.numpy()[members][k])
        assert out["vmap"][g] == pytest.approx(expected, rel=1e-10), g


def test_a_run_keeps_the_latest_tied_state_and_resumes_with_it(tiny_config, monkeypatch):
    rng = np.random.default_rng(2)
    base = 1.0 + 0.01 * rng.normal(size=GROUPS)
    jitter = [0.002 * rng.normal(size=GROUPS) for _ in range(6)]
    jitter = [j - j.mean() for j in jitter]
    groups = [base + 0.5, base, base + jitter[2] + 1e-4, base + 0.3, base + 0.3, base + 0.3]
    curve = [float(np.mean(g)) for g in groups]
    states = _forced_curve(monkeypatch, curve, groups)
    cfg = _cfg(tiny_config, iterations=6, stop={"patience": 3, "keep": "best", "tolerance": 1.0})
    run = build_run(cfg).run()
    assert run.tracker.best_iteration == 2 and run.tracker.kept_iteration == 3
    assert run.tracker.stopped_at == 6
    with h5py.File(run.result_path, "r") as f:
        v = f["validation"].attrs
        assert int(v["best_iteration"]) == 2 and int(v["kept_iteration"]) == 3
        assert float(v["tolerance"]) == 1.0 and int(f.attrs["state_iteration"]) == 3
        np.testing.assert_allclose(f["validation/best_groups"][()], groups[1])
        np.testing.assert_array_equal(f["object/phase"][()], states[3]["object_phase"].numpy())
    log = (run.output_dir / "run.log").read_text()
    assert "no state as good as the held-out minimum (iteration 2) since iteration 3" in log
    cfg["recon"]["iterations"] = 8
    resumed = build_run(cfg, resume=run.result_path)
    assert (resumed.tracker.best_iteration, resumed.tracker.kept_iteration) == (2, 3)
    np.testing.assert_allclose(resumed.tracker.best_groups, groups[1])
    # with tolerance 0 the same curve keeps the minimum
    monkeypatch.undo()
    states = _forced_curve(monkeypatch, curve, groups)
    cfg0 = _cfg(tiny_config, iterations=6, stop={"patience": 3, "keep": "best", "tolerance": 0})
    cfg0["output"]["dir"] += "-tol0"
    run0 = build_run(cfg0).run()
    assert run0.tracker.kept_iteration == 2 and run0.tracker.stopped_at == 5


def test_min_delta_needs_a_relative_improvement(tiny_config, monkeypatch):
    _forced_curve(monkeypatch, [1.0, 0.95, 0.93, 0.5, 0.4])
    run = build_run(_cfg(tiny_config, iterations=5, stop={"patience": 2, "min_delta": 0.1})).run()
    # 0.95 and 0.93 are less than 10 % below 1.0: two iterations without an improvement
    assert run.tracker.best_iteration == 1 and run.iteration == 3 and run.tracker.stopped_at == 3


@pytest.mark.parametrize(
    "recon, key",
    [
        (
            {"stop": {"patience": 3}, "validation": {"fraction": 0}},
            "recon.stop.patience needs held-out validation",
        ),
        ({"validation": {"fraction": 0.6}}, "recon.validation.fraction"),
        ({"validation": {"fraction": -0.01}}, "recon.validation.fraction"),
        ({"stop": {"keep": "worst"}}, "recon.stop.keep"),
        ({"stop": {"patience": 0}}, "recon.stop.patience"),
    ],
)
def test_bad_validation_settings_are_one_line(tiny_config, recon, key):
    cfg = tiny_config()
    cfg["recon"].update(recon)
    with pytest.raises(ConfigError) as info:
        build_config(cfg)
    assert key in str(info.value) and "\n" not in str(info.value)


def test_terms_that_read_no_pattern_are_skipped_by_the_heldout_loss():
    """A prior on the object (``reads_patterns = False``, e.g. the sparsity term) adds the same to
    both sums of the held-out loss: it is not evaluated there, and the value is that of the
    pattern terms alone."""
    from ptyrad_core.plugin import LossTerm

    class Prior(LossTerm):
        reads_patterns = False
        calls = 0

        def forward(self, pred, meas, batch):
            type(self).calls += 1
            return pred.new_tensor(3.0)

    class Residual(LossTerm):
        def forward(self, pred, meas, batch):
            return (pred - meas).square().mean()

    g = torch.Generator().manual_seed(0)
    meas = torch.rand(4, 6, 6, generator=g)
    pred = meas + 0.1 * torch.rand(4, 6, 6, generator=g)
    mask = Split.make(0, 0.2, 4, (6, 6)).mask(torch.arange(4))
    prior, residual = Prior(Prior.Options()), Residual(Residual.Options())
    with_prior = heldout_loss([("r", 1.0, residual), ("p", 2.0, prior)], pred, meas, mask, None, 0.2)
    alone = heldout_loss([("r", 1.0, residual)], pred, meas, mask, None, 0.2)
    assert Prior.calls == 0
    expect = float(((pred - meas).square() * mask).mean() / 0.2)
    assert float(with_prior) == float(alone) == pytest.approx(expect, rel=1e-6)


@pytest.mark.parametrize(
    "stop, wanted",
    [
        ({}, True),
        ({"tolerance": 0}, False),
        ({"keep": "last"}, False),
        ({"keep": "last", "patience": 5}, True),
    ],
)
def test_group_values_are_computed_only_where_the_run_uses_them(tiny_config, monkeypatch, stop, wanted):
    # the held-out loss forced to 1.0, 0.9, 0.95, 0.8: iteration 3 is the only one that is not a
    # new minimum, the only one whose groups are needed now (with iteration 2's, the minimum's);
    # the others' are deferred, and the last minimum's evaluated when the file is written
    curve = [1.0, 0.9, 0.95, 0.8]
    seen, evaluated = [], []
    value, group_values = Scorer.value, Scorer._group_values

    def forced(self, iteration, model):
        value(self, iteration, model)
        return torch.tensor(curve[iteration - 1], dtype=torch.float64)

    def counted(self, pred, meas, positions, iteration, model):
        evaluated.append(iteration)
        return group_values(self, pred, meas, positions, iteration, model)

    monkeypatch.setattr(Scorer, "value", forced)
    monkeypatch.setattr(Scorer, "_group_values", counted)

    class Record:
        @hookimpl
        def ptyrad_on_iter_end(self, run, iteration, metrics):
            seen.append(metrics.get("heldout_groups"))

    run = build_run(_cfg(tiny_config, iterations=4, stop=stop))
    run.pm.register(Record())
    run.run()
    assert run._scorer.want_groups is wanted and len(seen) == 4
    with h5py.File(run.result_path, "r") as f:
        stored = f["validation/best_groups"][()] if "best_groups" in f["validation"] else None
    if not wanted:
        assert seen == [None] * 4 and evaluated == [] and stored is None
        return
    assert [g is not None for g in seen] == [False, False, True, False]
    assert seen[2].shape == (GROUPS,) and np.all(np.isfinite(seen[2]))
    assert sorted(set(evaluated)) == [2, 3, 4] and evaluated.count(3) == 1  # iteration 1's never
    assert run.tracker.best_iteration == 4 and stored.shape == (GROUPS,) and np.all(np.isfinite(stored))
