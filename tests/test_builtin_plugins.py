"""Every built-in loss term and constraint against its plain formula (NumPy written here),
its schedule, and the r_z / k_z depth filters against each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.errors import ConfigError
from ptyrad_core.kernel.model import Batch, PtychoModel
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core.plugin import Constraint
from ptyrad_core.setup.optics import electron_wavelength, make_mixed_probe, make_probe

PM = get_plugin_manager(autoload=False)
RNG = np.random.default_rng(11)


def component(family, name, **options):
    cls = PM.registry(family).get(name).cls
    return cls(cls.Options(**options))


def make_model(omode=2, nz=5, n_obj=24, win=16, n_pos=4, pmode=3, per_position_tilts=False) -> PtychoModel:
    rng = np.random.default_rng(5)
    return PtychoModel(
        object_amplitude=1 + 0.05 * rng.standard_normal((omode, nz, n_obj, n_obj)),
        object_phase=0.3 * rng.standard_normal((omode, nz, n_obj, n_obj)) + 0.1,
        probe=make_mixed_probe(make_probe(win, 0.3, 200, 25, {"defocus": 60}), pmode, 0.1) * 30,
        positions_px=rng.uniform(0, n_obj - win - 1, (n_pos, 2)),
        tilts_mrad=rng.normal(0, 1, (n_pos if per_position_tilts else 1, 2)),
        slice_thickness=5.0,
        wavelength=electron_wavelength(200),
        dx=0.3,
        occupancy=[0.7, 0.3][:omode] if omode <= 2 else None,
        scan_shape=(2, 2),
        dtype=torch.float64,
    )


def state(model):
    return {
        "amp": model.object_amplitude.detach().numpy().copy(),
        "phase": model.object_phase.detach().numpy().copy(),
        "probe": model.probe.detach().numpy().copy(),
        "positions": model.positions.detach().numpy().copy(),
        "tilts": model.tilts.detach().numpy().copy(),
    }


def run_constraint(model, name, **options):
    c = component("constraint", name, **options)
    if hasattr(c, "setup"):
        c.setup(model)
    with torch.no_grad():
        c.enforce(model, 1)
    return state(model)


# --------------------------------------------------------------------------------------------
# NumPy helpers
# --------------------------------------------------------------------------------------------


def np_gauss(size, sigma):
    x = np.arange(size) - (size - 1) / 2
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def np_convolve(x, kernel, axis, mode):
    """Same-size convolution along ``axis`` with numpy padding ``mode`` ('reflect' or 'edge')."""
    n = len(kernel)
    front, back = (n - 1) // 2, n - 1 - (n - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (front, back)
    xp = np.pad(x, pad, mode=mode)
    out = np.zeros_like(x)
    length = x.shape[axis]
    for t in range(n):
        out += kernel[n - 1 - t] * np.take(xp, range(t, t + length), axis=axis)
    return out


def np_sigmoid_mask_px(npix, radius, width):
    """PtyRAD's make_sigmoid_mask, in pixel units, zero frequency at (N//2, N//2)."""
    y, x = np.meshgrid(np.arange(npix), np.arange(npix), indexing="ij")
    kr = np.hypot(y - npix // 2, x - npix // 2)
    return 1 / (1 + np.exp((kr - npix * radius / 2) / (width * npix) * 10))


def np_sort_modes(m):
    return m[np.argsort(-np.sum(np.abs(m) ** 2, axis=(1, 2)), kind="stable")]


def np_fresnel(shape, dx, lam, dz):
    ky = np.fft.fftfreq(shape[0], dx)[:, None]
    kx = np.fft.fftfreq(shape[1], dx)[None, :]
    return np.exp(-1j * np.pi * lam * (kx**2 + ky**2) * dz)


# --------------------------------------------------------------------------------------------
# loss terms
# --------------------------------------------------------------------------------------------


def patterns(b=4, n=16):
    pred = RNG.gamma(2.0, 3.0, (b, n, n))
    meas = RNG.poisson(pred * RNG.uniform(0.8, 1.2, pred.shape)).astype(float)
    return pred, meas


def loss_value(name, pred, meas, batch=None, **options):
    term = component("loss", name, **options)
    if hasattr(term, "setup") and batch is not None:
        term.setup(batch.model)
    return float(term(torch.as_tensor(pred), torch.as_tensor(meas), batch).detach())


@pytest.mark.parametrize("p", [0.5, 0.2, 1.0])
def test_gaussian_loss(p):
    pred, meas = patterns()
    expected = np.sqrt(np.mean(((pred + 1e-10) ** p - meas**p) ** 2)) / np.mean(meas**p)
    assert math.isclose(loss_value("gaussian", pred, meas, dp_pow=p), expected, rel_tol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.5, 0.2, 1.0, 2.0])
def test_measured_power_is_pow_except_sqrt_at_exact_zeros(p, dtype):
    """meas ** p exactly, except that p = 0.5 gives sqrt(tiny) (1.1e-19 in float32) for 0."""
    from ptyrad_core_plugins._common import measured_power

    meas = torch.as_tensor(patterns()[1], dtype=dtype)
    meas[0, 0, :3] = torch.tensor([0.0, 1e-30, 3e-8], dtype=dtype)  # a zero and tiny non-zero counts
    got, expected = measured_power(meas, p), meas.pow(p)
    zero = meas == 0
    assert zero.sum() > 10
    assert torch.equal(got[~zero], expected[~zero])
    if p == 0.5:
        assert float(got[zero].min()) > 0 and float(got[zero].max()) <= torch.finfo(dtype).tiny ** 0.5 * (
            1 + 1e-6
        )
    else:
        assert torch.equal(got[zero], expected[zero])
    assert math.isnan(float(measured_power(torch.tensor([-1.0], dtype=dtype), 0.5)[0]))


@pytest.mark.parametrize("p, eps", [(1.0, 1e-6), (0.5, 1e-3)])
def test_poisson_loss(p, eps):
    pred, meas = patterns()
    expected = -np.mean(meas**p * np.log(pred**p + eps) - pred**p) / np.mean(meas**p)
    assert math.isclose(loss_value("poisson", pred, meas, dp_pow=p, eps=eps), expected, rel_tol=1e-10)


def test_pacbed_loss():
    pred, meas = patterns()
    p = 0.2
    expected = np.sqrt(np.mean(((pred + 1e-10).mean(0) ** p - meas.mean(0) ** p) ** 2)) / np.mean(meas**p)
    assert math.isclose(loss_value("pacbed", pred, meas, dp_pow=p), expected, rel_tol=1e-10)


def np_patches(x, model, idx):
    """(B, omode, Nz, win, win) patches of a numpy object at the model's crops."""
    crops = model.crop.numpy()[idx]
    w = model.window[0]
    return np.stack([x[:, :, cy : cy + w, cx : cx + w] for cy, cx in crops])


@pytest.mark.parametrize("q", [1.0, 2.0])
def test_sparse_loss(q):
    model = make_model()
    idx = torch.tensor([0, 2, 3])
    batch = Batch(idx, 1, model)
    ph = np_patches(model.object_phase.detach().numpy(), model, idx.numpy())
    occ = model.occupancy.numpy()
    expected = np.sum(np.mean(np.abs(ph) ** q, axis=(0, 2, 3, 4)) ** (1 / q) * occ)
    assert math.isclose(loss_value("sparse", *patterns(3), batch, ln_order=q), expected, rel_tol=1e-10)


@pytest.mark.parametrize("obj_type", ["amplitude", "phase", "both"])
def test_similarity_loss(obj_type):
    model = make_model()
    idx = torch.tensor([1, 3])
    batch = Batch(idx, 1, model)
    occ = model.occupancy.numpy()[:, None, None, None]
    k = np_gauss(5, 1.0)
    expected = 0.0
    for part, arr in (("amplitude", model.object_amplitude), ("phase", model.object_phase)):
        if obj_type in (part, "both"):
            x = np_patches(arr.detach().numpy(), model, idx.numpy())
            x = np_convolve(np_convolve(x, k, -1, "reflect"), k, -2, "reflect")
            expected += np.mean(np.std(x * occ, axis=1, ddof=1))
    value = loss_value("similarity", *patterns(2), batch, obj_type=obj_type, blur_std=1.0)
    assert math.isclose(value, expected, rel_tol=1e-10)


def test_similarity_needs_two_object_modes():
    with pytest.raises(ConfigError, match="model.object.modes >= 2"):
        component("loss", "similarity").setup(make_model(omode=1))


@pytest.mark.parametrize("name", sorted(PM.registry("loss").names()))
def test_every_loss_is_a_finite_differentiable_scalar_and_rejects_unknown_options(name):
    model = make_model()
    model.set_iteration(1)
    for n in ("object_amplitude", "object_phase", "probe"):
        model.parameter(n).requires_grad_(True)
    idx = torch.arange(4)
    pred, batch = model(idx)
    meas = torch.as_tensor(RNG.poisson(pred.detach().numpy()).astype(float))
    term = component("loss", name)
    if hasattr(term, "setup"):
        term.setup(model)
    value = term(pred, meas, batch)
    assert value.ndim == 0 and torch.isfinite(value) and value.dtype == torch.float64
    value.backward()
    grads = [model.parameter(n).grad for n in ("object_amplitude", "object_phase", "probe")]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValidationError):
        PM.registry("loss").get(name).cls.Options(no_such_option=1)


PIXELWISE_LOSSES = sorted(n for n in PM.registry("loss").names() if PM.registry("loss").get(n).cls.pixelwise)


def test_the_pattern_misfits_are_declared_pixelwise_and_the_rest_not():
    # gaussian / poisson: means of a per-pixel misfit; pacbed compares batch-averaged patterns;
    # sparse / similarity read no pattern
    assert PIXELWISE_LOSSES == ["gaussian", "poisson"]
    assert not PM.registry("loss").get("pacbed").cls.pixelwise
    assert not any(PM.registry("loss").get(n).cls.reads_patterns for n in ("sparse", "similarity"))


@pytest.mark.parametrize("name", PIXELWISE_LOSSES)
def test_a_loss_declared_pixelwise_depends_on_pixel_values_alone(name):
    """``pixelwise = True`` lets the held-out loss evaluate a term on the held-out pixels alone,
    as ``(B, 1, K)``: the value must then not change when the pixels are shuffled within each
    pattern and laid out as one row; a term that declares it wrongly (PACBED averages patterns
    pixel by pixel) fails here."""
    model = make_model()
    model.set_iteration(1)
    pred, batch = model(torch.arange(4))
    pred = pred.detach()
    meas = torch.as_tensor(RNG.poisson(pred.numpy()).astype(float))
    term = component("loss", name)
    b = len(pred)
    perm = torch.stack(
        [torch.randperm(pred[0].numel(), generator=torch.Generator().manual_seed(i)) for i in range(b)]
    )
    shuffled = [t.reshape(b, -1).gather(1, perm).unsqueeze(1) for t in (pred, meas)]
    torch.testing.assert_close(term(*shuffled, batch), term(pred, meas, batch), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------------
# constraints
# --------------------------------------------------------------------------------------------


def test_ortho_pmode_gives_orthogonal_modes_with_the_same_intensity():
    model = make_model(pmode=4)
    rng = np.random.default_rng(2)
    mixed = model.probe.detach().numpy() + 0.3 * (
        rng.standard_normal((4, 16, 16)) + 1j * rng.standard_normal((4, 16, 16))
    )
    model.assign("probe", torch.as_tensor(mixed))
    before = model.probe.detach().numpy().reshape(4, -1)
    after = run_constraint(model, "ortho_pmode")["probe"].reshape(4, -1)
    gram = after @ after.conj().T
    assert np.allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-9 * np.abs(gram).max())
    assert math.isclose(np.sum(np.abs(after) ** 2), np.sum(np.abs(before) ** 2), rel_tol=1e-12)
    assert np.allclose(before.conj().T @ before, after.conj().T @ after, atol=1e-9)  # same mixed state
    powers = np.sum(np.abs(after) ** 2, axis=1)
    assert np.all(np.diff(powers) <= 0)


def test_fix_probe_int():
    model = make_model()
    c = component("constraint", "fix_probe_int")
    c.setup(model)
    target = np.sum(np.abs(model.probe.detach().numpy()) ** 2)
    model.assign("probe", model.probe.detach() * 1.7)
    drifted = model.probe.detach().numpy()
    with torch.no_grad():
        c.enforce(model, 1)
    assert np.allclose(model.probe.detach().numpy(), drifted * np.sqrt(target / np.sum(np.abs(drifted) ** 2)))


def test_probe_mask_k():
    model = make_model(pmode=3)
    probe = model.probe.detach().numpy()
    radius, width, thresh = 0.3, 0.05, 0.5
    powers = np.sum(np.abs(probe) ** 2, axis=(1, 2))
    n = int(np.nonzero(np.cumsum(powers / powers.sum()) > thresh)[0][0]) + 1
    mask = np_sigmoid_mask_px(16, radius, width)
    sh, ish = np.fft.fftshift, np.fft.ifftshift
    k = sh(np.fft.fft2(ish(probe[:n], axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    masked = sh(np.fft.ifft2(ish(k * mask, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    expected = np_sort_modes(np.concatenate([masked, probe[n:]]))
    got = run_constraint(model, "probe_mask_k", radius=radius, width=width, power_thresh=thresh)["probe"]
    assert n == 1 and np.allclose(got, expected, atol=1e-10)


def test_probe_mask_r():
    model = make_model(pmode=2)
    probe = np_sort_modes(model.probe.detach().numpy())
    zs = np.linspace(-200, 200, 41)
    sharp = [
        np.sum(
            np.abs(np.fft.ifft2(np.fft.fft2(probe[0]) * np_fresnel((16, 16), 0.3, model.wavelength, z))) ** 4
        )
        for z in zs
    ]
    z = zs[int(np.argmax(sharp))]
    assert abs(z - 60) <= 10  # the probe was made with 60 A defocus: the search finds its focus
    h = np_fresnel((16, 16), 0.3, model.wavelength, z)
    g = np.linspace(-1, 1, 16)
    r = np.hypot(g[:, None], g[None, :])
    window = np.exp(-0.5 * (r / 0.6) ** (2 * 4))
    focused = np.fft.ifft2(np.fft.fft2(probe[:1]) * h)
    masked = np.fft.ifft2(np.fft.fft2(focused * window) * np.conj(h))
    expected = np_sort_modes(np.concatenate([masked, probe[1:]]))
    got = run_constraint(
        model, "probe_mask_r", radius=0.6, order=4, power_thresh=0.5, z_range=(-200, 200), z_steps=41
    )["probe"]
    assert np.allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("obj_type", ["amplitude", "phase", "both"])
def test_obj_rblur(obj_type):
    model = make_model()
    s0 = state(model)
    k = np_gauss(5, 0.7)
    got = run_constraint(model, "obj_rblur", obj_type=obj_type, kernel_size=5, std=0.7)
    for part in ("amp", "phase"):
        blurred = np_convolve(np_convolve(s0[part], k, -1, "reflect"), k, -2, "reflect")
        target = blurred if obj_type in ("both", {"amp": "amplitude", "phase": "phase"}[part]) else s0[part]
        assert np.allclose(got[part], target, atol=1e-12)


def test_obj_zblur_is_the_rz_filter():
    model = make_model()
    s0 = state(model)
    k = np_gauss(5, 1.2)
    got = run_constraint(model, "obj_zblur", kernel_size=5, std=1.2)
    for part in ("amp", "phase"):
        assert np.allclose(got[part], np_convolve(s0[part], k, 1, "edge"), atol=1e-12)


def test_kr_filter():
    model = make_model()
    s0 = state(model)
    mask = np.fft.ifftshift(np_sigmoid_mask_px(24, 0.4, 0.08))
    got = run_constraint(model, "kr_filter", radius=0.4, width=0.08)
    for part in ("amp", "phase"):
        assert np.allclose(got[part], np.real(np.fft.ifft2(np.fft.fft2(s0[part]) * mask)), atol=1e-12)


def np_kz(x, beta, alpha):
    kz, ky, kx = (np.fft.fftfreq(n) for n in x.shape[1:])
    kz, ky, kx = np.meshgrid(kz, ky, kx, indexing="ij")
    w = 1 - np.arctan((beta * np.abs(kz) / np.sqrt(kx**2 + ky**2 + 1e-3)) ** 2) / (np.pi / 2)
    w = w * np.exp(-alpha * (kx**2 + ky**2))
    return np.real(np.fft.ifftn(np.fft.fftn(x, axes=(1, 2, 3)) * w, axes=(1, 2, 3)))


def test_kz_filter():
    model = make_model()
    s0 = state(model)
    got = run_constraint(model, "kz_filter", beta=0.7, alpha=1.0)
    assert np.allclose(got["phase"], np_kz(s0["phase"], 0.7, 1.0), atol=1e-12)
    assert np.allclose(got["amp"], 1 + 0.9 * (np_kz(s0["amp"], 0.7, 1.0) - 1), atol=1e-12)


def test_rz_filter_does_not_wrap_around_but_kz_does():
    """A phase only in the bottom slice: the periodic k_z filter leaks it into the top slice."""
    nz = 8
    leaks = {}
    for name, options in (
        ("kz_filter", {"beta": 1.0, "alpha": 0.0, "obj_type": "phase"}),
        ("obj_zblur", {"std": 1.0, "kernel_size": 5, "obj_type": "phase"}),
    ):
        model = make_model(omode=1, nz=nz)
        phase = np.zeros((1, nz, 24, 24))
        phase[0, -1] = np.random.default_rng(0).uniform(0.5, 1.5, (24, 24))
        model.object_phase.data.copy_(torch.as_tensor(phase))
        after = run_constraint(model, name, **options)["phase"]
        leaks[name] = np.abs(after[0, 0]).sum() / np.abs(phase[0, -1]).sum()
    assert leaks["kz_filter"] > 0.02
    assert leaks["obj_zblur"] <= leaks["kz_filter"] / 10


def np_dct_matrix(n):
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    c = np.sqrt(2 / n) * np.cos(np.pi * k * (2 * i + 1) / (2 * n))
    c[0] *= np.sqrt(0.5)
    return c


def test_kr_thresh():
    model = make_model()
    s0 = state(model)
    c = np_dct_matrix(24)
    got = run_constraint(model, "kr_thresh", thresh=0.1, obj_type="phase")
    coeffs = np.einsum("ky,...yx,lx->...kl", c, s0["phase"], c)
    keep = max(1, int(0.1 * coeffs.size))
    kth = np.sort(np.abs(coeffs).ravel())[-keep]
    expected = np.einsum("ky,...kl,lx->...yx", c, coeffs * (np.abs(coeffs) >= kth), c)
    assert np.allclose(got["phase"], expected, atol=1e-10)
    assert np.array_equal(got["amp"], s0["amp"])


@pytest.mark.parametrize("alpha1, alpha2", [(1.0, 0.0), (0.5, 0.3)])
def test_complex_ratio(alpha1, alpha2):
    model = make_model()
    s0 = state(model)
    la, ph = np.log(s0["amp"]), s0["phase"]
    cbar = np.abs(la).sum() / (np.abs(ph).sum() + 1e-8)
    got = run_constraint(model, "complex_ratio", alpha1=alpha1, alpha2=alpha2)
    assert np.allclose(got["amp"], np.exp((1 - alpha1) * la - alpha1 * cbar * ph))
    assert np.allclose(got["phase"], (1 - alpha2) * ph - alpha2 / (cbar + 1e-8) * la)


def test_mirrored_amp():
    model = make_model()
    s0 = state(model)
    got = run_constraint(model, "mirrored_amp", relax=0.2, scale=0.05, power=3.0)
    assert np.allclose(got["amp"], 0.2 * s0["amp"] + 0.8 * (1 - 0.05 * np.clip(s0["phase"], 0, None) ** 3))


def test_obja_thresh_and_objp_postiv():
    model = make_model()
    s0 = state(model)
    got = run_constraint(model, "obja_thresh", thresh=(0.97, 1.02), relax=0.25)
    assert np.allclose(got["amp"], 0.25 * s0["amp"] + 0.75 * np.clip(s0["amp"], 0.97, 1.02))
    got = run_constraint(model, "objp_postiv", relax=0.1)
    assert np.allclose(got["phase"], 0.1 * s0["phase"] + 0.9 * np.clip(s0["phase"], 0, None))
    model = make_model()
    got = run_constraint(model, "objp_postiv", mode="subtract_min")
    assert np.allclose(got["phase"], s0["phase"] - s0["phase"].min())
    with pytest.raises(ValidationError, match="low <= high"):
        PM.registry("constraint").get("obja_thresh").cls.Options(thresh=(1.1, 0.9))


def test_pos_recenter():
    model = make_model()
    model.positions.data.copy_(torch.as_tensor(np.random.default_rng(3).normal(0.5, 1, (4, 2))))
    s0 = state(model)
    got = run_constraint(model, "pos_recenter", relax=0.3)
    assert np.allclose(got["positions"], s0["positions"] - 0.7 * s0["positions"].mean(0))


def test_tilt_smooth():
    model = make_model(per_position_tilts=True, n_pos=4)
    model.scan_shape = (2, 2)
    s0 = state(model)
    got = run_constraint(model, "tilt_smooth", std=1.0, kernel_size=3)
    grid = s0["tilts"].reshape(2, 2, 2)
    k = np_gauss(3, 1.0)
    expected = np_convolve(np_convolve(grid, k, 0, "reflect"), k, 1, "reflect").reshape(-1, 2)
    assert np.allclose(got["tilts"], expected)
    with pytest.raises(ConfigError, match="per_position"):
        component("constraint", "tilt_smooth").setup(make_model())


def test_obj_z_recenter():
    model = make_model(omode=1, nz=8)
    phase = np.zeros((1, 8, 24, 24))
    phase[0, 1] = 1.0 + np.random.default_rng(1).uniform(0, 0.1, (24, 24))  # all the phase near the top
    model.object_phase.data.copy_(torch.as_tensor(phase))
    s0 = state(model)
    got = run_constraint(model, "obj_z_recenter", thresh=50, scale=1.0, max_shift=10)
    p = np.clip(s0["phase"], 0, None)
    p[p < np.quantile(p, 0.5)] = 0
    w = p.mean(axis=(0, 2, 3))
    shift = float(np.clip(3.5 - (np.arange(8) * w).sum() / (w.sum() + 1e-8), -3.5, 3.5))
    assert math.isclose(shift, 2.5, abs_tol=1e-6)
    obj = s0["amp"] * np.exp(1j * s0["phase"])
    ramp = np.exp(-2j * np.pi * np.fft.fftfreq(8) * shift)[None, :, None, None]
    moved = np.fft.ifft(np.fft.fft(obj, axis=1) * ramp, axis=1)
    assert np.allclose(got["amp"], np.abs(moved), atol=1e-10)
    assert np.allclose(got["phase"], np.angle(moved), atol=1e-10)
    h = np_fresnel((16, 16), 0.3, model.wavelength, -shift * 5.0)
    assert np.allclose(got["probe"], np.fft.ifft2(np.fft.fft2(s0["probe"]) * h), atol=1e-10)


# --------------------------------------------------------------------------------------------
# schedules, in a real run
# --------------------------------------------------------------------------------------------


# (start_iter, step, end_iter) and the iterations of 1..7 it selects, written out by hand
SCHEDULES = [((2, 2, 7), [2, 4, 6]), ((1, 3, None), [1, 4, 7]), ((3, 1, 5), [3, 4])]


def test_a_constraint_schedule_selects_its_iterations():
    """The rule: from start_iter every step-th iteration, stopping before end_iter; start_iter null =
    never."""
    from ptyrad_core.kernel.config import ConstraintSpec

    for (start, step, end), want in SCHEDULES:
        spec = ConstraintSpec(name="x", start_iter=start, step=step, end_iter=end)
        assert [i for i in range(1, 8) if spec.runs_at(i)] == want, (start, step, end)
    assert not any(ConstraintSpec(name="x", start_iter=None, step=2).runs_at(i) for i in range(1, 20))
    assert [i for i in range(1, 6) if ConstraintSpec(name="x").runs_at(i)] == [
        1,
        2,
        3,
        4,
        5,
    ]  # the default: always


def test_every_constraint_runs_exactly_at_its_schedule(tiny_config, monkeypatch):
    """Every built-in constraint in one 7-iteration run, each on one of SCHEDULES in turn: each runs
    exactly at its iterations, and the parameters stay finite with all of them applied."""
    names = sorted(PM.registry("constraint").names())
    classes = {name: PM.registry("constraint").get(name).cls for name in names}
    assert len(set(classes.values())) == len(names)  # one class per name: calls are told apart by class
    calls = {cls: [] for cls in classes.values()}
    for cls in classes.values():
        # the method the kernel calls: enforce, or the old apply of a class written before the rename
        verb = "enforce" if getattr(cls, "enforce", None) not in (None, Constraint.enforce) else "apply"
        original = getattr(cls, verb)
        monkeypatch.setattr(
            cls,
            verb,
            lambda self, model, it, _o=original: (calls[type(self)].append(it), _o(self, model, it))[1],
        )
    schedules = {name: SCHEDULES[i % len(SCHEDULES)] for i, name in enumerate(names)}
    cfg = tiny_config(
        model={
            "probe": {"modes": 2},
            "object": {"modes": 2, "phase_noise": 0.01, "slices": 3, "slice_thickness_A": 2.6},
            "tilts": {"mode": "per_position"},
        },
        constraints=[
            {"name": name, **dict(zip(("start_iter", "step", "end_iter"), schedules[name][0]))}
            for name in names
        ],
        update={"positions": {"lr": 1e-3}, "tilts": {"lr": 1e-2}},
    )
    cfg["recon"].update(iterations=7, batch_size=32)
    run = Reconstruction(build_config(cfg), quiet=True).run()
    assert {name: calls[classes[name]] for name in names} == {name: schedules[name][1] for name in names}
    assert all(np.isfinite(run.history["loss"]))
    for n in ("object_amplitude", "object_phase", "probe_ri", "positions", "tilts"):
        assert torch.isfinite(getattr(run.model, n)).all(), n
