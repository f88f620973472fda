"""Preprocessing steps (plugin family ``preprocess``): PtyRAD 1.0's measurement preprocessing.

Each step against a NumPy computation written here on random data, in memory and (per-pattern
steps) streamed from an HDF5 file; the pipeline's bookkeeping (selection, scan shape, dk);
errors that name the step or the option.
"""

from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from ptyrad_core.kernel.data import Measurements
from ptyrad_core.kernel.errors import DataError
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core.kernel.preprocess import PreprocessContext
from ptyrad_core.setup.preprocess import run_pipeline
from ptyrad_core_plugins.detectors.pad_measurements import PadMeasurements, background_canvas
from ptyrad_core_plugins.detectors.resample_measurements import ResampleMeasurements
from ptyrad_core_plugins.preprocess import add_detector_blur as preprocess_add_detector_blur
from ptyrad_core_plugins.preprocess import add_poisson_noise as preprocess_add_poisson_noise
from ptyrad_core_plugins.preprocess import add_source_size as preprocess_add_source_size
from ptyrad_core_plugins.preprocess import crop as preprocess_crop
from ptyrad_core_plugins.preprocess import export as preprocess_export
from ptyrad_core_plugins.preprocess import flipt as preprocess_flipt
from ptyrad_core_plugins.preprocess import negative as preprocess_negative
from ptyrad_core_plugins.preprocess import normalize as preprocess_normalize
from ptyrad_core_plugins.preprocess import pad as preprocess_pad
from ptyrad_core_plugins.preprocess import permute as preprocess_permute
from ptyrad_core_plugins.preprocess import resample as preprocess_resample
from ptyrad_core_plugins.preprocess import reshape as preprocess_reshape

MODULES = [
    preprocess_permute,
    preprocess_reshape,
    preprocess_flipt,
    preprocess_crop,
    preprocess_negative,
    preprocess_normalize,
    preprocess_pad,
    preprocess_resample,
    preprocess_add_source_size,
    preprocess_add_detector_blur,
    preprocess_add_poisson_noise,
    preprocess_export,
]
NAMES = [
    "permute",
    "reshape",
    "flipT",
    "crop",
    "negative",
    "normalize",
    "pad",
    "resample",
    "add_source_size",
    "add_detector_blur",
    "add_poisson_noise",
    "export",
]
SCAN = (6, 5)
K = 16


@pytest.fixture(scope="module")
def pm():
    """A plugin manager with these modules, registered inline (as the ``register_inline`` fixture
    does) unless their entry points already are; built once: it takes ~0.2 s."""
    base = get_plugin_manager(autoload=False)
    return get_plugin_manager(autoload=False, inline=[m for m in MODULES if not base.is_registered(m)])


@pytest.fixture(scope="module")
def step(pm):
    """``step(name, **options)``: the registered class, constructed with validated options."""

    def make(name, **options):
        cls = pm.registry("preprocess").get(name).cls
        return cls(cls.Options(**options))

    return make


def patterns(seed=0, negative=False, shape=(SCAN[0] * SCAN[1], K, K)) -> np.ndarray:
    """Random float32 patterns with a bright disk at the centre (and some negatives if asked)."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape[-2:])
    disk = 50 * np.exp(-((y - shape[-2] // 2) ** 2 + (x - shape[-1] // 2) ** 2) / 20.0)
    a = disk + 5 * rng.random(shape)
    if negative:
        a -= 1.0
    return a.astype(np.float32)


def context(scan_shape=SCAN, **kw) -> PreprocessContext:
    return PreprocessContext(scan_shape=scan_shape, **kw)


def run(step_obj, arr, ctx=None):
    meas = Measurements(arr.copy(), "test")
    ctx = ctx or context()
    step_obj.transform(meas, ctx)
    meas.as_patterns()
    return meas.read(np.arange(meas.n)), meas, ctx


@pytest.fixture
def lazy(tmp_path):
    """``lazy(arr)``: a Measurements streamed from an HDF5 dataset in a temporary file."""
    files = []

    def make(arr, name="data.h5"):
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            f["meas"] = arr
        fh = h5py.File(path, "r")
        files.append(fh)
        meas = Measurements(fh["meas"], f"{path}:meas")
        assert not meas.in_memory
        return meas

    yield make
    for fh in files:
        fh.close()


def test_all_steps_registered(pm):
    reg = pm.registry("preprocess")
    for name in NAMES:
        assert name in reg
    layout = {n for n in NAMES if reg.get(n).cls.layout}
    assert layout == {"permute", "reshape"}


# ---------------------------------------------------------------------------------------------
# layout steps
# ---------------------------------------------------------------------------------------------


def test_permute_and_reshape_match_numpy(step):
    raw = patterns(1, shape=(K, K, *SCAN))  # (ky, kx, Ny, Nx), MATLAB style
    meas = Measurements(raw.copy(), "test")
    ctx = context(scan_shape=None)
    res = run_pipeline(
        meas, [("p0", step("permute", order=[2, 3, 1, 0])), ("p1", step("flipT", fliplr=True))], ctx
    )
    ref = np.transpose(raw, (2, 3, 1, 0)).reshape(-1, K, K)[:, :, ::-1]
    assert np.array_equal(meas.read(np.arange(meas.n)), ref)
    assert res.scan_shape == SCAN and res.calibration_shape == (K, K) and res.dk_factor == 1.0

    flat = patterns(2, shape=(SCAN[0] * SCAN[1] * K, K))
    out, meas, _ = run(step("reshape", shape=[-1, K, K]), flat)
    assert np.array_equal(out, flat.reshape(-1, K, K))
    _, meas, _ = run(step("reshape", shape=[*SCAN, K, K]), flat)
    assert meas.scan_shape == SCAN


def test_layout_after_other_step_raises(step):
    meas = Measurements(patterns(), "test")
    with pytest.raises(DataError, match=r"data.preprocess\[1\].*layout steps"):
        run_pipeline(
            meas,
            [
                ("data.preprocess[0]", step("flipT", flipud=True)),
                ("data.preprocess[1]", step("reshape", shape=[-1, K, K])),
            ],
            context(),
        )


def test_layout_errors_name_the_option(step):
    with pytest.raises(ValidationError, match="order"):
        step("permute", order=[0, 0, 1])
    with pytest.raises(ValidationError, match="shape"):
        step("reshape", shape=[-1, -1, 4])
    with pytest.raises(DataError, match="order"):
        run(step("permute", order=[1, 0]), patterns())
    with pytest.raises(DataError, match="shape"):
        run(step("reshape", shape=[7, K, K]), patterns())


# ---------------------------------------------------------------------------------------------
# per-pattern and scan-selection steps against NumPy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ud, lr, t", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (1, 0, 1)])
def test_flipT(step, ud, lr, t):
    a = patterns(3, shape=(4, 6, 7))  # non-square: the transpose is visible in the shape
    ref = a
    if ud:
        ref = ref[:, ::-1]
    if lr:
        ref = ref[:, :, ::-1]
    if t:
        ref = ref.transpose(0, 2, 1)
    out, _, _ = run(step("flipT", flipud=bool(ud), fliplr=bool(lr), transpose=bool(t)), a)
    assert np.array_equal(out, ref)


def test_crop_scan_and_detector(step):
    a = patterns(4)
    out, meas, ctx = run(step("crop", scan_slow=[1, 4], scan_fast=[2, 5], ky=[3, 13], kx=[2, 14]), a)
    ref = a.reshape(*SCAN, K, K)[1:4, 2:5, 3:13, 2:14].reshape(-1, 10, 12)
    assert np.array_equal(out, ref)
    assert ctx.scan_shape == (3, 3) and meas.scan_shape == (3, 3)
    assert np.array_equal(meas.selection, [7, 8, 9, 12, 13, 14, 17, 18, 19])
    # a second crop composes with the first; the pipeline reports the raw indices kept
    meas = Measurements(a.copy(), "test")
    res = run_pipeline(
        meas,
        [("s0", step("crop", scan_slow=[1, 4], scan_fast=[2, 5])), ("s1", step("crop", scan_fast=[1, 3]))],
        context(),
    )
    assert res.scan_shape == (3, 2) and np.array_equal(res.selection, [8, 9, 13, 14, 18, 19])
    assert np.array_equal(meas.read(np.arange(meas.n)), a[res.selection])
    # a detector crop only
    out, meas, ctx = run(step("crop", kx=[4, 12]), a)
    assert np.array_equal(out, a[:, :, 4:12]) and meas.selection is None and ctx.scan_shape == SCAN


def test_crop_errors_name_the_option(step):
    with pytest.raises(DataError, match="scan_slow.*scan.n_slow"):
        run(step("crop", scan_slow=[0, 2]), patterns(), context(scan_shape=None))
    with pytest.raises(DataError, match=r"scan_fast = \[2, 9\].*5 scan columns"):
        run(step("crop", scan_fast=[2, 9]), patterns())
    with pytest.raises(DataError, match="ky"):
        run(step("crop", ky=[0, K + 1]), patterns())
    with pytest.raises(ValidationError, match="kx"):
        step("crop", kx=[5, 5])
    with pytest.raises(ValidationError, match="extra|unknown|not permitted"):
        step("crop", scan=[0, 1])


@pytest.mark.parametrize(
    "mode, value", [("clip_neg", None), ("subtract_min", None), ("clip_value", 0.5), ("subtract_value", 0.3)]
)
def test_negative(step, mode, value):
    a = patterns(5, negative=True)
    ref = a.copy()
    if mode == "clip_neg":
        ref[ref < 0] = 0
    elif mode == "subtract_min":
        ref -= ref.min()
    elif mode == "clip_value":
        ref[ref < np.float32(value)] = 0
    else:
        ref -= np.float32(value)
    ref[ref < 0] = 0  # PtyRAD's final clip
    out, _, _ = run(step("negative", mode=mode, value=value), a)
    assert np.array_equal(out, ref) and out.min() >= 0


def test_negative_skips_without_negatives_unless_forced(step):
    a = patterns(6)
    out, _, ctx = run(step("negative", mode="subtract_value", value=2.0), a)
    assert np.array_equal(out, a) and "skipped" in ctx.notes[-1]
    out, _, _ = run(step("negative", mode="subtract_value", value=2.0, force=True), a)
    assert np.array_equal(out, np.maximum(a - np.float32(2.0), 0))
    with pytest.raises(ValidationError, match="value"):
        step("negative", mode="clip_value")


@pytest.mark.parametrize("mode", ["max_at_one", "mean_at_one", "sum_to_one", "divide_const"])
def test_normalize(step, mode):
    a = patterns(7)
    mean = a.mean(0, dtype=np.float64)
    c = {"max_at_one": mean.max(), "mean_at_one": mean.mean(), "sum_to_one": mean.sum(), "divide_const": 3.5}[
        mode
    ]
    out, _, _ = run(step("normalize", mode=mode, value=3.5 if mode == "divide_const" else None), a)
    assert np.allclose(out, a / c, rtol=1e-6, atol=0)
    if mode == "max_at_one":
        assert out.mean(0).max() == pytest.approx(1.0, rel=1e-6)


def test_normalize_errors(step):
    with pytest.raises(ValidationError, match="value"):
        step("normalize", mode="divide_const")
    with pytest.raises(ValidationError, match="value"):
        step("normalize", mode="divide_const", value=0)
    with pytest.raises(DataError, match="max_at_one"):
        run(step("normalize"), np.zeros((4, 8, 8), np.float32))


def test_pad_constant_matches_numpy(step):
    a, npix, v = patterns(8), 24, 0.5
    out, _, ctx = run(step("pad", npix=npix, padding="constant", value=v), a)
    p = npix // 2 - K // 2
    ref = np.full((len(a), npix, npix), v * v, np.float32)
    ref[:, p : p + K, p : p + K] = a
    assert np.allclose(out, ref, rtol=1e-6) and np.array_equal(out[:, p : p + K, p : p + K], a)
    assert "background" in ctx.notes[-1]


@pytest.mark.parametrize("padding", ["constant", "edge", "linear_ramp", "exp", "power"])
@pytest.mark.parametrize("k", [16, 15])
def test_pad_equals_pad_measurements_stage(step, padding, k):
    """Precomputed padding == the on-the-fly detector stage's measurements(), odd sizes included."""
    a, npix = patterns(9, shape=(12, k, k)), 24
    out, _, _ = run(step("pad", npix=npix, padding=padding, value=0.7, threshold=60), a)
    stage = PadMeasurements(PadMeasurements.Options(npix=npix, padding=padding, value=0.7, threshold=60))
    stage.prepare(Measurements(a.copy(), "test"))
    ref = stage.measurements(torch.from_numpy(a), None).numpy()
    assert np.array_equal(out, ref)
    canvas, corner = background_canvas(a.mean(0, dtype=np.float64), npix, padding, 0.7, 60)
    assert corner == (npix // 2 - k // 2,) * 2


def test_pad_errors(step):
    with pytest.raises(DataError, match="npix = 8"):
        run(step("pad", npix=8, padding="edge"), patterns())
    with pytest.raises(ValidationError, match="padding"):
        step("pad", npix=32, padding="reflect")


def interp_matrix(n_in, n_out, x):
    """Dense bilinear weights sampling ``n_in`` pixels at coordinates ``x`` (clamped)."""
    x = np.clip(x, 0, n_in - 1)
    w = np.zeros((n_out, n_in))
    i0 = np.floor(x).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    for i in range(n_out):
        w[i, i0[i]] += 1 - (x[i] - i0[i])
        w[i, i1[i]] += x[i] - i0[i]
    return w


@pytest.mark.parametrize("scale, align", [(1.5, "zero_frequency"), (0.75, "zero_frequency"), (1.25, "edges")])
def test_resample_matches_numpy_and_stage(step, scale, align):
    a = patterns(10)
    m = int(np.floor(K * scale))
    i = np.arange(m)
    x = K // 2 + (i - m // 2) * K / m if align == "zero_frequency" else (i + 0.5) * K / m - 0.5
    w = interp_matrix(K, m, x)
    ref = np.einsum("ip,npq,jq->nij", w, a.astype(np.float64), w) / scale**2
    meas = Measurements(a.copy(), "test")
    res = run_pipeline(meas, [("r", step("resample", scale=scale, align=align))], context())
    out = meas.read(np.arange(meas.n))
    assert out.shape == (len(a), m, m)
    assert np.allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert res.dk_factor == pytest.approx(K / m) and res.calibration_shape == (K, K)
    stage = ResampleMeasurements(ResampleMeasurements.Options(scale=scale, align=align))
    assert stage.measurement_grid((K, K), 1.0) == ((m, m), pytest.approx(K / m))
    assert np.array_equal(out, stage.measurements(torch.from_numpy(a), None).numpy())


def test_resample_after_pad_dk_factor(step):
    meas = Measurements(patterns(11), "test")
    res = run_pipeline(
        meas, [("p", step("pad", npix=20, padding="edge")), ("r", step("resample", scale=0.8))], context()
    )
    assert meas.pattern_shape == (16, 16) and res.calibration_shape == (K, K)
    assert res.dk_factor == pytest.approx(20 / 16)  # pad keeps dk, resample 20 -> 16 over the same kMax
    with pytest.raises(DataError, match="square"):
        run(step("resample", scale=2.0), patterns(shape=(3, 8, 10)))


def reflect_index(i, n):
    """scipy.ndimage mode 'reflect' (d c b a | a b c d | d c b a), periodic with period 2n."""
    i = np.mod(i, 2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def gaussian_matrix(n, sigma):
    """Dense (n, n) matrix of scipy's gaussian_filter1d (truncate 4, mode reflect)."""
    r = int(4.0 * sigma + 0.5)
    t = np.arange(-r, r + 1)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    w = np.zeros((n, n))
    for i in range(n):
        np.add.at(w[i], reflect_index(i + t, n), g)
    return w


def test_add_detector_blur(step):
    a, s = patterns(12), 0.8
    w = gaussian_matrix(K, s)
    ref = np.einsum("ip,npq,jq->nij", w, a.astype(np.float64), w)
    out, _, _ = run(step("add_detector_blur", std_px=s), a)
    assert np.allclose(out, ref, rtol=1e-6, atol=1e-5)
    assert np.allclose(out.sum((1, 2)), a.sum((1, 2)), rtol=1e-5)  # reflect keeps the total
    assert np.array_equal(run(step("add_detector_blur", std_px=0), a)[0], a)


def test_add_source_size(step):
    a, s_A, step_A = patterns(13), 0.9, 0.4
    sigma = s_A / step_A  # 2.25 scan steps: the kernel is wider than the 5 columns
    wy, wx = gaussian_matrix(SCAN[0], sigma), gaussian_matrix(SCAN[1], sigma)
    ref = np.einsum("ar,bc,rcpq->abpq", wy, wx, a.reshape(*SCAN, K, K).astype(np.float64)).reshape(a.shape)
    out, _, _ = run(step("add_source_size", std_A=s_A), a, context(scan_step_A=step_A))
    assert np.allclose(out, ref, rtol=1e-6, atol=1e-5)
    with pytest.raises(DataError, match="scan.step_A"):
        run(step("add_source_size", std_A=s_A), a)
    with pytest.raises(DataError, match="scan.n_slow"):
        run(step("add_source_size", std_A=s_A), a, context(scan_shape=None, scan_step_A=step_A))


def test_gaussian_filters_match_scipy(step):
    ndimage = pytest.importorskip("scipy.ndimage")
    a = patterns(14)
    out, _, _ = run(step("add_detector_blur", std_px=1.3), a)
    assert np.allclose(out, ndimage.gaussian_filter(a, 1.3, axes=(-2, -1)), rtol=1e-5, atol=1e-5)
    out, _, _ = run(step("add_source_size", std_A=0.5), a, context(scan_step_A=0.25))
    ref = ndimage.gaussian_filter(a.reshape(*SCAN, K, K), 2.0, axes=(0, 1)).reshape(a.shape)
    assert np.allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_add_poisson_noise(step):
    a, n_e = patterns(15), 1e4
    ctx = context(seed=3, scan_step_A=0.5)
    out, _, _ = run(step("add_poisson_noise", unit="total_e_per_pattern", value=n_e), a, ctx)
    c = a.sum(dtype=np.float64) / len(a)
    rng = np.random.default_rng([3, preprocess_add_poisson_noise.SALT])
    ref = (rng.poisson(a.astype(np.float64) * (n_e / c)) * (c / n_e)).astype(np.float32)
    assert np.array_equal(out, ref)
    # counts: every value is a multiple of c / n_e; the mean is kept within the shot noise
    counts = out.astype(np.float64) * n_e / c
    assert np.allclose(counts, np.round(counts), atol=1e-3)
    assert out.sum() / a.sum() == pytest.approx(1.0, abs=5 / np.sqrt(n_e * len(a)))
    # reproducible from the seed; e_per_A2 = total / step^2
    again, _, _ = run(
        step("add_poisson_noise", unit="e_per_A2", value=n_e / 0.25), a, context(seed=3, scan_step_A=0.5)
    )
    assert np.array_equal(again, out)
    other, _, _ = run(step("add_poisson_noise", unit="total_e_per_pattern", value=n_e), a, context(seed=4))
    assert not np.array_equal(other, out)


def test_add_poisson_noise_errors(step):
    with pytest.raises(DataError, match="scan.step_A"):
        run(step("add_poisson_noise", unit="e_per_A2", value=100), patterns())
    with pytest.raises(DataError, match="non-negative"):
        run(step("add_poisson_noise", unit="total_e_per_pattern", value=100), patterns(negative=True))
    with pytest.raises(ValidationError, match="unit"):
        step("add_poisson_noise", unit="e_per_nm2", value=100)
    with pytest.raises(ValidationError, match="value"):
        step("add_poisson_noise", unit="total_e_per_pattern", value=-1)


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["hdf5", "npy", "tif"])
def test_export_writes_patterns_and_changes_nothing(step, tmp_path, fmt):
    if fmt == "tif":
        tifffile = pytest.importorskip("tifffile")
    a = patterns(16)
    ctx = context(base_dir=tmp_path, data_path=tmp_path / "raw" / "scan.h5")
    out, _, _ = run(step("export", format=fmt, shape=[*SCAN, K, K]), a, ctx)
    assert np.array_equal(out, a)
    path = tmp_path / "raw" / f"ptyrad_init_meas_6_5_16_16.{fmt}"
    if fmt == "hdf5":
        with h5py.File(path, "r") as f:
            got = f["meas"][()]
    elif fmt == "npy":
        got = np.load(path)
    else:
        got = tifffile.imread(path).reshape(*SCAN, K, K)
    assert got.dtype == np.float32 and np.array_equal(got, a.reshape(*SCAN, K, K))


def test_export_path_and_errors(step, tmp_path, monkeypatch):
    a = patterns(17)
    ctx = context(base_dir=tmp_path)
    run(step("export", path="out/meas", format="npy"), a, ctx)
    assert np.array_equal(np.load(tmp_path / "out" / "meas.npy"), a)
    with pytest.raises(DataError, match="shape"):
        run(step("export", path="x.npy", format="npy", shape=[7, -1]), a, ctx)
    with pytest.raises(ValidationError, match="format"):
        step("export", format="mat")
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import tifffile -> ImportError
    with pytest.raises(DataError, match="tifffile"):
        run(step("export", path="x.tif", format="tif"), a, ctx)


# ---------------------------------------------------------------------------------------------
# streamed from disk
# ---------------------------------------------------------------------------------------------


def chain(step, tmp_path, tag):
    return [
        ("c", step("crop", scan_slow=[1, 5], scan_fast=[0, 4], ky=[1, 15], kx=[1, 15])),
        ("f", step("flipT", flipud=True, transpose=True)),
        ("n", step("negative", mode="subtract_min")),
        ("z", step("normalize", mode="max_at_one")),
        ("p", step("pad", npix=20, padding="exp", threshold=60)),
        ("r", step("resample", scale=0.8)),
        ("b", step("add_detector_blur", std_px=0.7)),
        ("e", step("export", path=str(tmp_path / f"{tag}.h5"), format="hdf5")),
    ]


def test_streamed_chain_equals_in_memory(step, lazy, tmp_path):
    a = patterns(18, negative=True)
    mem = Measurements(a.copy(), "mem")
    res_mem = run_pipeline(mem, chain(step, tmp_path, "mem"), context())
    disk = lazy(a)
    res_disk = run_pipeline(disk, chain(step, tmp_path, "disk"), context())
    assert not disk.in_memory and disk.pattern_shape == mem.pattern_shape == (16, 16)
    got, ref = disk.read(np.arange(disk.n)), mem.read(np.arange(mem.n))
    assert np.allclose(got, ref, rtol=1e-6, atol=1e-7)
    assert res_disk.scan_shape == res_mem.scan_shape == (4, 4)
    assert np.array_equal(res_disk.selection, res_mem.selection)
    assert res_disk.dk_factor == res_mem.dk_factor == pytest.approx(20 / 16)
    with h5py.File(tmp_path / "mem.h5", "r") as f, h5py.File(tmp_path / "disk.h5", "r") as g:
        assert np.allclose(f["meas"][()], ref) and np.allclose(g["meas"][()], got)
    # a random-order batch read from disk gives the same patterns
    idx = np.array([9, 2, 15, 2])
    assert np.allclose(disk.read(idx), ref[idx], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "name, options",
    [
        ("permute", dict(order=[0, 2, 1])),
        ("reshape", dict(shape=[-1, K, K])),
        ("add_source_size", dict(std_A=0.5)),
        ("add_poisson_noise", dict(unit="total_e_per_pattern", value=100)),
    ],
)
def test_memory_steps_on_streamed_data_name_the_step(step, lazy, name, options):
    disk = lazy(patterns(19))
    with pytest.raises(DataError, match=rf"data.preprocess\[0\].*'{name}' needs the measurements in memory"):
        run_pipeline(disk, [("data.preprocess[0]", step(name, **options))], context(scan_step_A=0.4))


def test_memmap_source_streams_too(step, tmp_path):
    a = patterns(20)
    path = tmp_path / "a.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=a.shape)
    mm[:] = a
    mm.flush()
    meas = Measurements(np.memmap(path, dtype=np.float32, mode="r", shape=a.shape), "memmap")
    assert not meas.in_memory
    run_pipeline(meas, [("c", step("crop", scan_fast=[1, 4])), ("f", step("flipT", fliplr=True))], context())
    ref = a.reshape(*SCAN, K, K)[:, 1:4].reshape(-1, K, K)[:, :, ::-1]
    assert np.array_equal(meas.read(np.arange(meas.n)), ref)


# ---------------------------------------------------------------------------------------------
# through the config and the kernel's prepare_data
# ---------------------------------------------------------------------------------------------


def test_config_chain_through_prepare_data(tiny_config):
    from ptyrad_core.kernel.config import build_config, validate_components
    from ptyrad_core.kernel.errors import ConfigError
    from ptyrad_core.setup.initialize import prepare_data

    base = get_plugin_manager(autoload=False)
    modules = [m.__name__ for m in MODULES if not base.is_registered(m)]
    preprocess = [
        {"name": "crop", "options": {"scan_slow": [2, 6], "scan_fast": [1, 7]}},
        {"name": "normalize"},
        {"name": "pad", "options": {"npix": 80, "padding": "exp"}},
        {"name": "resample", "options": {"scale": 0.8}},
    ]
    cfg = tiny_config()
    cfg["data"]["preprocess"] = preprocess
    cfg["plugins"] = {"modules": modules}
    config = build_config(cfg)
    pm = get_plugin_manager(modules=config.plugins.modules, autoload=False)
    data = prepare_data(config, pm, validate_components(config, pm))
    assert data.measurements.pattern_shape == (64, 64) and data.preprocess.scan_shape == (4, 6)
    assert np.array_equal(data.preprocess.selection, (np.arange(2, 6)[:, None] * 8 + np.arange(1, 7)).ravel())
    assert data.dk == pytest.approx(
        1 / (64 * 0.19525) * 80 / 64
    )  # dx_A calibrates the raw 64 px; pad keeps dk
    assert any(n.startswith("pad:") for n in data.notes)

    cfg["data"]["preprocess"] = [{"name": "negative", "options": {"mode": "subtract_value"}}]
    config = build_config(cfg)
    with pytest.raises(ConfigError, match=r"preprocess.*value"):
        validate_components(config, pm)
    cfg["data"]["preprocess"] = [{"name": "crop", "options": {"scan_fast": [0, 9]}}]
    config = build_config(cfg)
    with pytest.raises(DataError, match=r"data.preprocess\[0\] 'crop': scan_fast = \[0, 9\]"):
        prepare_data(config, pm, validate_components(config, pm))
