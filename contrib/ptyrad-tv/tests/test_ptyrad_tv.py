"""ptyrad-tv: the TV formulas against plain NumPy, the proximal operator against its analytic
solution and its optimality, discovery through the entry point, and a reconstruction on tiny.h5."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ptyrad_tv = pytest.importorskip("ptyrad_tv")

from ptyrad_tv import TVPhaseLoss, TVPhaseProx, divergence, gradient, tv_prox  # noqa: E402
from pydantic import ValidationError  # noqa: E402

# -- plain NumPy formulas -------------------------------------------------------------------


def np_tv_density(u: np.ndarray, eps: float) -> np.ndarray:
    """sqrt(gy^2 + gx^2 + eps^2) - eps with forward differences, zero past the last row / column."""
    gy = np.zeros_like(u)
    gx = np.zeros_like(u)
    gy[..., :-1, :] = np.diff(u, axis=-2)
    gx[..., :, :-1] = np.diff(u, axis=-1)
    return np.sqrt(gy**2 + gx**2 + eps**2) - eps


def np_objective(u: np.ndarray, f: np.ndarray, weight: float) -> float:
    return float(0.5 * np.sum((u - f) ** 2) + weight * np.sum(np_tv_density(u, 0.0)))


# -- formulas -------------------------------------------------------------------------------


def test_gradient_and_divergence_are_adjoint():
    rng = np.random.default_rng(0)
    u = torch.from_numpy(rng.normal(size=(3, 7, 9)))
    py, px = (torch.from_numpy(rng.normal(size=(3, 7, 9))) for _ in range(2))
    gy, gx = gradient(u)
    assert torch.allclose((gy * py + gx * px).sum(), -(u * divergence(py, px)).sum())


def test_loss_equals_the_plain_formula():
    rng = np.random.default_rng(1)
    phase = rng.normal(size=(5, 2, 3, 8, 8))  # (B, omode, Nz, Ny, Nx)
    occupancy = np.array([0.7, 0.3])
    batch = SimpleNamespace(
        object_patches=(
            torch.ones(phase.shape, dtype=torch.float64),
            torch.from_numpy(phase).requires_grad_(),
        ),
        model=SimpleNamespace(occupancy=torch.from_numpy(occupancy)),
    )
    eps = 0.05
    term = TVPhaseLoss(TVPhaseLoss.Options(eps=eps))
    value = term(None, None, batch)
    expected = sum(occupancy[n] * np_tv_density(phase[:, n], eps).mean() for n in range(2))
    assert value.item() == pytest.approx(expected, rel=1e-12)
    value.backward()
    assert torch.isfinite(batch.object_patches[1].grad).all()


def test_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    phase = torch.from_numpy(rng.normal(size=(2, 1, 1, 5, 5))).requires_grad_()
    model = SimpleNamespace(occupancy=torch.ones(1, dtype=torch.float64))
    term = TVPhaseLoss(TVPhaseLoss.Options(eps=0.1))

    def f(p):
        return term(None, None, SimpleNamespace(object_patches=(None, p), model=model))

    assert torch.autograd.gradcheck(f, (phase,))


def test_prox_of_a_step_moves_the_plateaus_by_lambda_over_their_widths():
    # each row is the 1-D problem: plateaus of n1 and n2 px move towards each other by lambda / n
    n1, n2, h, lam = 6, 10, 1.0, 0.6
    f = np.zeros((4, n1 + n2))
    f[:, n1:] = h
    u = tv_prox(torch.from_numpy(f), lam, n_iter=3000).numpy()
    expected = np.where(np.arange(n1 + n2) < n1, lam / n1, h - lam / n2)
    np.testing.assert_allclose(u, np.broadcast_to(expected, f.shape), atol=1e-4)


def test_prox_is_the_minimiser_of_its_objective():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(12, 12))
    lam = 0.3
    u = tv_prox(torch.from_numpy(f), lam, n_iter=2000).numpy()
    best = np_objective(u, f, lam)
    assert best < np_objective(f, f, lam)
    for _ in range(20):  # convex: any perturbation is no better
        assert best <= np_objective(u + 1e-3 * rng.normal(size=u.shape), f, lam) + 1e-9
    # constants are fixed points, and the mean is kept (the TV ignores it)
    np.testing.assert_allclose(tv_prox(torch.full((5, 5), 0.7, dtype=torch.float64), lam).numpy(), 0.7)
    assert u.mean() == pytest.approx(f.mean(), abs=1e-10)


def test_constraint_applies_the_prox_to_every_slice_and_mode():
    rng = np.random.default_rng(4)
    phase = rng.normal(size=(2, 3, 10, 10))
    model = SimpleNamespace(object_phase=torch.from_numpy(phase.copy()))
    TVPhaseProx(TVPhaseProx.Options(weight=0.2, n_iter=50)).enforce(model, 1)
    for m in range(2):
        for z in range(3):
            one = tv_prox(torch.from_numpy(phase[m, z]), 0.2, 50).numpy()
            np.testing.assert_allclose(model.object_phase[m, z].numpy(), one, atol=1e-12)


def test_options_reject_unknown_and_bad_values():
    with pytest.raises(ValidationError, match="extra"):
        TVPhaseProx.Options(weight=0.1, wieght=0.2)
    with pytest.raises(ValidationError):
        TVPhaseProx.Options(weight=0.0)
    with pytest.raises(ValidationError):
        TVPhaseLoss.Options(eps=0)


# -- through ptyrad_core --------------------------------------------------------------------


def test_installed_entry_point_registers_both_components():
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    assert pm.registry("loss").get("tv_phase").cls is TVPhaseLoss
    assert pm.registry("constraint").get("tv_phase").cls is TVPhaseProx
    info = pm.info["ptyrad_tv"]
    assert (info.source, info.distribution, info.version) == (
        "installed package",
        "ptyrad-tv",
        ptyrad_tv.__version__,
    )


def tiny_h5() -> Path:
    """data/tiny.h5 of the ptyrad_core checkout (or $PTYRAD_CORE_TINY_H5)."""
    if os.environ.get("PTYRAD_CORE_TINY_H5"):
        return Path(os.environ["PTYRAD_CORE_TINY_H5"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "data" / "tiny.h5").is_file():
            return parent / "data" / "tiny.h5"
    pytest.skip("data/tiny.h5 not found (set PTYRAD_CORE_TINY_H5)")


def tiny_config(out: Path, **sections) -> dict:
    data = str(tiny_h5())
    cfg = {
        "data": {"path": data, "loader": "hdf5", "options": {"key": "measurements"}},
        "experiment": {
            "energy_kV": 300,
            "conv_angle_mrad": 21.4,
            "dx_A": 0.19525,
            "aberrations": {"defocus": 100},
        },
        "scan": {"source": "file", "path": data, "key": "positions_nominal_px", "n_slow": 8, "n_fast": 8},
        "model": {"object": {"slices": 2, "slice_thickness_A": 3.905}},
        "loss": [{"name": "gaussian"}],
        "recon": {"iterations": 2, "batch_size": 16},
        "output": {"dir": str(out), "figures": False},
    }
    cfg.update(copy.deepcopy(sections))
    return cfg


def test_reconstruction_with_the_tv_loss_and_constraint(tmp_path):
    import ptyrad_core
    from ptyrad_core.engine.results import read_result

    plain = ptyrad_core.run(tiny_config(tmp_path / "plain"))
    run = ptyrad_core.run(
        tiny_config(
            tmp_path / "tv",
            loss=[{"name": "gaussian"}, {"name": "tv_phase", "weight": 0.05}],
            constraints=[{"name": "tv_phase", "options": {"weight": 0.02}, "start_iter": 1}],
        )
    )
    result = read_result(run.result_path)
    assert len(result["history/loss_terms/tv_phase"]) == 2
    assert np.all(np.isfinite(result["history/loss"]))
    assert any(p["distribution"] == "ptyrad-tv" for p in result["attrs"]["plugins"])

    def tv(r):
        return np_tv_density(r.model.object_phase.detach().double().numpy(), 0.0).sum()

    assert tv(run) < 0.8 * tv(plain)
