"""Result readers: ptyrad_core's own result file, PtyRAD 1.0, PtychoShelves (.mat v5 / v7.3), py4DSTEM.

ptyrad_core: a real 2-iteration run read back. PtyRAD: a real model file written by PtyRAD 1.0
(tests/fixtures/ptyrad_model_iter0001.hdf5, see tests/fixtures/README.md), checked against its
layout read with h5py and, where PtyRAD's venv exists, against PtyRAD's own loading code.
PtychoShelves and py4DSTEM: synthetic files in their layouts, checked against the formulas and,
where PtyRAD's venv exists, against PtyRAD's own ``_load_*_from_ptyshv`` / ``_from_py4dstem``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.errors import DataError
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core_plugins.readers import ptychoshelves as reader_ptychoshelves
from ptyrad_core_plugins.readers import ptyrad as reader_ptyrad
from ptyrad_core_plugins.readers import ptyrad_core as reader_ptyrad_core
from ptyrad_core_plugins.readers import py4dstem as reader_py4dstem

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "ptyrad_model_iter0001.hdf5"
TINY = ROOT / "data" / "tiny.h5"
MODULES = (reader_ptyrad_core, reader_ptyrad, reader_ptychoshelves, reader_py4dstem)
NAMES = {"ptyrad_core", "ptyrad", "ptychoshelves", "py4dstem"}


def _ptyrad_python() -> Path | None:
    candidates = [
        os.environ.get("PTYRAD_PYTHON"),
        ROOT / ".venv-ptyrad/bin/python",
        ROOT.parent / ".venv-ptyrad/bin/python",
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


# PtyRAD's own loading code, run in its venv on a list of (tag, source, path); arrays to an npz.
PTYRAD_LOADER = r"""
import json, sys, types
import numpy as np
from ptyrad.init.initializer import Initializer as I
from ptyrad.io.load import load_ptyrad
me = types.SimpleNamespace(
    use_cached_probe=False, use_cached_pos=False, use_cached_obj=False, cache_contents=None
)
out = {}
for tag, source, path in json.loads(sys.argv[1]):
    if source == "PtyRAD":
        out[tag + "/probe"] = I._load_probe_from_ptyrad(me, path)
        out[tag + "/object"] = I._load_obj_from_ptyrad(me, path)
        out[tag + "/positions"] = I._load_pos_from_ptyrad(me, path)
        out[tag + "/tilts"] = np.float32(load_ptyrad(path)["optimizable_tensors"]["obj_tilts"])
    elif source == "PtyShv":
        out[tag + "/probe"] = I._load_probe_from_ptyshv(me, path)
        out[tag + "/object"] = I._load_obj_from_ptyshv(me, path)
        out[tag + "/positions"] = I._load_pos_from_ptyshv(me, path)
    else:
        out[tag + "/probe"] = I._load_probe_from_py4dstem(me, path)
        out[tag + "/object"] = I._load_obj_from_py4dstem(me, path)
        out[tag + "/positions"] = I._load_pos_from_py4dstem(me, path)
np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in out.items()})
"""


def ptyrad_reference(jobs: list[tuple[str, str, Path]], tmp_path: Path) -> dict[str, np.ndarray] | None:
    """What PtyRAD 1.0 itself loads from each file, or None if its venv is not installed."""
    python = _ptyrad_python()
    if python is None:
        return None
    out = tmp_path / "ptyrad_reference.npz"
    arg = json.dumps([(tag, source, str(path)) for tag, source, path in jobs])
    proc = subprocess.run(
        [str(python), "-c", PTYRAD_LOADER, arg, str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture
def reader_pm(register_inline):
    """A plugin manager with the four readers (through their entry points once registered)."""
    pm = get_plugin_manager(autoload=False)
    if NAMES <= set(pm.registry("result_reader").names()):
        return pm
    return register_inline(*MODULES)


def read(pm, name: str, path: Path):
    entry = pm.registry("result_reader").get(name)
    return entry.cls(Path(path), entry.cls.Options()).read()


def rng_complex(rng, shape, dtype=np.complex64):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------------------------
# synthetic foreign files
# --------------------------------------------------------------------------------------------


def write_mat73(path: Path, variables: dict, complex_float: str = "<f8") -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 after a 512-byte header, axes reversed,
    complex arrays as ('real', 'imag') compounds, structs as groups."""
    with h5py.File(path, "w", userblock_size=512) as f:

        def put(group, name, value):
            if isinstance(value, dict):
                sub = group.create_group(name)
                sub.attrs["MATLAB_class"] = np.bytes_("struct")
                for k, v in value.items():
                    put(sub, k, v)
                return
            arr = np.atleast_2d(np.asarray(value))
            arr = arr.transpose(range(arr.ndim)[::-1])
            if np.iscomplexobj(arr):
                ct = np.dtype([("real", complex_float), ("imag", complex_float)])
                comp = np.empty(arr.shape, ct)
                comp["real"], comp["imag"] = arr.real, arr.imag
                arr = comp
            group.create_dataset(name, data=arr)

        for name, value in variables.items():
            put(f, name, value)
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)


def ptyshv_arrays(rng, probe_shape=(16, 14, 3), obj_shape=(41, 36, 4), n=12):
    return {
        "probe": rng_complex(rng, probe_shape),
        "object": rng_complex(rng, obj_shape),
        "positions": rng.uniform(-8, 8, size=(n, 2)),
    }


def expected_ptyshv(a) -> dict:
    """Re-derived from PtyRAD's _load_*_from_ptyshv (MATLAB order in, ptyrad_core order out)."""
    probe = a["probe"]
    probe = probe[..., 0] if probe.ndim == 4 else probe[..., None] if probe.ndim == 2 else probe
    obj = a["object"]
    obj = obj[None, None] if obj.ndim == 2 else obj[None].transpose(0, 3, 1, 2)
    offset = np.ceil(np.array(a["object"].shape[:2]) / 2 - np.array(a["probe"].shape[:2]) / 2) - 1
    return {"probe": probe.transpose(2, 0, 1), "object": obj, "positions": a["positions"][:, [1, 0]] + offset}


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """The synthetic PtychoShelves / py4DSTEM files, their source arrays, and what PtyRAD 1.0 loads
    from them and from the PtyRAD fixture (one PtyRAD process for all; None without its venv)."""
    tmp = tmp_path_factory.mktemp("foreign")
    rng = np.random.default_rng(1)
    files, arrays = {}, {}
    a = arrays["v5"] = ptyshv_arrays(
        rng
    )  # probe (16, 14, 3), object (41, 36, 4): unequal sizes catch axis swaps
    from scipy.io import savemat  # a test dependency (MATLAB v5 files)

    files["v5"] = tmp / "Niter100.mat"
    savemat(
        files["v5"],
        {
            "probe": a["probe"],
            "object": a["object"],
            "outputs": {"probe_positions": a["positions"], "z_distance": np.full((1, 4), 1.5)},
            "p": {"dx_spec": np.array([[0.2, 0.2]]), "lambda": 0.0197},
        },
    )
    a = arrays["v73"] = ptyshv_arrays(
        rng, probe_shape=(18, 20, 2, 3), obj_shape=(45, 50)
    )  # 4-D probe, 2-D object
    files["v73"] = tmp / "Niter200.mat"
    write_mat73(
        files["v73"],
        {
            "probe": a["probe"].astype(np.complex128),
            "object": a["object"].astype(np.complex128),
            "outputs": {"probe_positions": a["positions"]},
            "p": {"dx_spec": np.array([[2e-11, 2e-11]])},
        },
    )
    arrays["ms"] = {
        "probe": rng_complex(rng, (2, 24, 20)),
        "object": rng_complex(rng, (3, 50, 44)),
        "positions": rng.uniform(12, 30, (9, 2)),
    }
    arrays["ss"] = {
        "probe": rng_complex(rng, (25, 21)),
        "object": rng_complex(rng, (50, 44)),
        "positions": rng.uniform(12, 30, (9, 2)),
    }
    for tag in ("ms", "ss"):
        files[tag] = tmp / f"py4dstem_{tag}.h5"
        with h5py.File(files[tag], "w") as f:
            f["probe"], f["object"], f["positions_px"] = (
                arrays[tag]["probe"],
                arrays[tag]["object"],
                arrays[tag]["positions"],
            )
    sources = {"v5": "PtyShv", "v73": "PtyShv", "ms": "py4DSTEM", "ss": "py4DSTEM"}
    jobs = [("m", "PtyRAD", FIXTURE)] + [(tag, sources[tag], path) for tag, path in files.items()]
    return {"files": files, "arrays": arrays, "ref": ptyrad_reference(jobs, tmp)}


def need_ptyrad(ref):
    if ref is None:
        pytest.skip(
            "PtyRAD 1.0 venv not found (set PTYRAD_PYTHON); checked against the file layout / formulas only"
        )
    return ref


# --------------------------------------------------------------------------------------------
# ptyrad_core
# --------------------------------------------------------------------------------------------


def test_ptyrad_core_reader_reproduces_the_run(tiny_config, reader_pm):
    cfg = tiny_config(
        model={
            "object": {"slices": 2, "slice_thickness_A": 3.905},
            "probe": {"modes": 2},
            "tilts": {"mode": "per_position", "init_mrad": [0.5, -1.0]},
        }
    )
    run = Reconstruction(build_config(cfg), quiet=True).run()
    m = run.model
    assert reader_pm.hook.ptyrad_sniff_result(path=run.result_path) == "ptyrad_core"
    prior = read(reader_pm, "ptyrad_core", run.result_path)
    probe = m.probe.detach().numpy()
    obj = m.object_amplitude.detach().numpy() * np.exp(1j * m.object_phase.detach().numpy())
    assert prior.probe.shape == probe.shape == (2, 64, 64) and prior.probe.dtype == np.complex64
    np.testing.assert_array_equal(prior.probe, probe)
    assert prior.object.shape == obj.shape == (1, 2) + m.object_shape
    np.testing.assert_allclose(prior.object, obj, rtol=0, atol=1e-6)
    np.testing.assert_allclose(prior.positions_px, m.refined_positions().detach().numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(prior.tilts_mrad, m.tilts.detach().numpy(), rtol=0, atol=1e-6)
    assert prior.tilts_mrad.shape == (64, 2)
    np.testing.assert_allclose(prior.occupancy, m.occupancy.numpy())
    assert prior.dx_A == pytest.approx(m.dx)
    assert prior.slice_thickness_A == pytest.approx(float(m.slice_thickness))
    nominal = reader_ptyrad_core.PtyradCoreResultReader(
        run.result_path, reader_ptyrad_core.PtyradCoreResultReader.Options(positions="nominal")
    ).read()
    np.testing.assert_allclose(nominal.positions_px, (m.crop + m.frac).numpy(), atol=1e-6)


def test_ptyrad_core_reader_errors(tmp_path):
    opts = reader_ptyrad_core.PtyradCoreResultReader.Options()
    with pytest.raises(DataError, match="does not exist"):
        reader_ptyrad_core.PtyradCoreResultReader(tmp_path / "nope.h5", opts).read()
    with pytest.raises(DataError, match="tiny.h5.*ptyrad_core-result"):
        reader_ptyrad_core.PtyradCoreResultReader(TINY, opts).read()


# --------------------------------------------------------------------------------------------
# PtyRAD 1.0 (a real model file written by PtyRAD)
# --------------------------------------------------------------------------------------------


def test_ptyrad_reader_on_real_ptyrad_output(reader_pm, foreign):
    assert FIXTURE.stat().st_size < 2_000_000
    prior = read(reader_pm, "ptyrad", FIXTURE)
    with h5py.File(FIXTURE, "r") as f:  # PtyRAD's layout (ptyrad.io.save.make_save_dict)
        t, a = f["optimizable_tensors"], f["model_attributes"]
        probe, obja, objp = t["probe"][()], t["obja"][()], t["objp"][()]
        pos = a["crop_pos"][()] + t["probe_pos_shifts"][()]
        tilts, dz, dx, occu = t["obj_tilts"][()], t["slice_thickness"][()], a["dx"][()], a["omode_occu"][()]
    assert probe.dtype == np.complex64 and probe.shape == (2, 64, 64)  # PtyRAD saves the complex view
    np.testing.assert_array_equal(prior.probe, probe)
    assert prior.object.shape == obja.shape == (1, 2, 94, 94)
    np.testing.assert_allclose(prior.object, obja * np.exp(1j * objp), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(prior.positions_px, pos)
    assert np.abs(pos - np.round(pos)).max() > 0.01  # sub-pixel shifts present
    np.testing.assert_array_equal(prior.tilts_mrad, tilts)
    assert (
        prior.tilts_mrad.shape == (64, 2) and abs(prior.tilts_mrad[:, 1].mean() + 2.5) < 0.1
    )  # mrad, as saved
    assert prior.slice_thickness_A == pytest.approx(float(dz)) and prior.slice_thickness_A != pytest.approx(
        3.905
    )
    assert prior.dx_A == pytest.approx(float(dx)) == pytest.approx(0.19525)
    np.testing.assert_array_equal(prior.occupancy, occu)

    ref = need_ptyrad(foreign["ref"])  # PtyRAD's own _load_*_from_ptyrad on the same file
    np.testing.assert_array_equal(prior.probe, ref["m/probe"])
    np.testing.assert_allclose(prior.object, ref["m/object"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(prior.positions_px, ref["m/positions"])
    np.testing.assert_array_equal(prior.tilts_mrad, ref["m/tilts"])


def test_ptyrad_reader_real_view_probe_and_errors(tmp_path):
    """An older layout with the probe as a real view (pmode, Ny, Nx, 2); missing parts are named."""
    src = tmp_path / "old.hdf5"
    with h5py.File(FIXTURE, "r") as f, h5py.File(src, "w") as g:
        for group in ("optimizable_tensors", "model_attributes"):
            f.copy(group, g)
        probe = g["optimizable_tensors/probe"][()]
        del g["optimizable_tensors/probe"]
        g["optimizable_tensors/probe"] = np.stack([probe.real, probe.imag], -1)
    opts = reader_ptyrad.PtyradResultReader.Options()
    np.testing.assert_array_equal(reader_ptyrad.PtyradResultReader(src, opts).read().probe, probe)
    with h5py.File(src, "a") as g:
        del g["model_attributes/crop_pos"]
    with pytest.raises(DataError, match=r"old.hdf5: no dataset 'model_attributes/crop_pos'.*holds:.*obja"):
        reader_ptyrad.PtyradResultReader(src, opts).read()
    with pytest.raises(DataError, match="tiny.h5: no group 'optimizable_tensors'.*holds: .*measurements"):
        reader_ptyrad.PtyradResultReader(TINY, opts).read()


# --------------------------------------------------------------------------------------------
# PtychoShelves / fold_slice
# --------------------------------------------------------------------------------------------


def test_ptychoshelves_v5_and_v73(reader_pm, foreign):
    files, arrays = foreign["files"], foreign["arrays"]
    priors = {}
    for tag in ("v5", "v73"):
        assert reader_pm.hook.ptyrad_sniff_result(path=files[tag]) == "ptychoshelves"
        prior = priors[tag] = read(reader_pm, "ptychoshelves", files[tag])
        exp = expected_ptyshv(arrays[tag])
        np.testing.assert_allclose(prior.probe, exp["probe"], atol=1e-6)
        np.testing.assert_allclose(prior.object, exp["object"], atol=1e-6)
        np.testing.assert_allclose(prior.positions_px, exp["positions"], atol=1e-12)
    p5, p73 = priors["v5"], priors["v73"]
    assert p5.probe.shape == (3, 16, 14) and p5.object.shape == (1, 4, 41, 36)
    assert p73.probe.shape == (2, 18, 20) and p73.object.shape == (1, 1, 45, 50)
    # offset = ceil(obj / 2 - probe / 2) - 1 = (ceil(12.5) - 1, ceil(11) - 1) = (12, 10) for v5
    np.testing.assert_allclose(
        p5.positions_px - arrays["v5"]["positions"][:, ::-1], np.broadcast_to([12, 10], (12, 2))
    )
    assert p5.dx_A == pytest.approx(0.2) and p5.slice_thickness_A == pytest.approx(1.5)
    assert p73.dx_A == pytest.approx(0.2) and p73.slice_thickness_A is None  # metres -> Angstrom

    ref = need_ptyrad(foreign["ref"])  # PtyRAD's own _load_*_from_ptyshv on the same files
    for tag, prior in priors.items():
        np.testing.assert_allclose(prior.probe, ref[f"{tag}/probe"], atol=1e-6)
        np.testing.assert_allclose(prior.object, ref[f"{tag}/object"], atol=1e-6)
        np.testing.assert_allclose(prior.positions_px, ref[f"{tag}/positions"], atol=1e-12)


def test_ptychoshelves_single_precision_v73_and_shape_cases(tmp_path):
    savemat = pytest.importorskip("scipy.io").savemat
    rng = np.random.default_rng(2)
    opts = reader_ptychoshelves.PtychoShelvesResultReader.Options()
    # MATLAB single complex in v7.3: a ('real', 'imag') float32 compound (PtyRAD 1.0 handles float64 only)
    a = ptyshv_arrays(rng, probe_shape=(16, 16), obj_shape=(30, 30, 2))
    f32 = tmp_path / "single.mat"
    write_mat73(
        f32,
        {"probe": a["probe"], "object": a["object"], "outputs": {"probe_positions": a["positions"]}},
        "<f4",
    )
    prior = reader_ptychoshelves.PtychoShelvesResultReader(f32, opts).read()
    exp = expected_ptyshv(a)
    np.testing.assert_array_equal(prior.probe, exp["probe"])
    np.testing.assert_array_equal(prior.object, exp["object"])
    np.testing.assert_allclose(prior.positions_px, exp["positions"])
    assert prior.dx_A is None
    # v5 (Ny, Nx, 1, vp): one probe mode (PtyRAD's squeeze would make vp modes); (Ny, Nx, 1, Nz) object
    probe = rng_complex(rng, (16, 16, 1, 4))
    obj = rng_complex(rng, (30, 30, 1, 3))
    vp = tmp_path / "vp.mat"
    savemat(vp, {"probe": probe, "object": obj})
    prior = reader_ptychoshelves.PtychoShelvesResultReader(vp, opts).read()
    np.testing.assert_array_equal(prior.probe, probe[:, :, :, 0].transpose(2, 0, 1))
    np.testing.assert_array_equal(prior.object, obj[:, :, 0, :][None].transpose(0, 3, 1, 2))
    assert (
        prior.positions_px is None
    )  # no outputs.probe_positions: the kernel says so if positions are asked for
    # missing variable: named with the file's contents
    bad = tmp_path / "bad.mat"
    savemat(bad, {"probe": probe, "p": {"dx_spec": 1.0}})
    with pytest.raises(DataError, match=r"bad.mat: no variable 'object'.*holds: .*probe \(16, 16, 1, 4\)"):
        reader_ptychoshelves.PtychoShelvesResultReader(bad, opts).read()
    assert reader_ptychoshelves.sniff(bad) is False
    with pytest.raises(DataError, match="does not exist"):
        reader_ptychoshelves.PtychoShelvesResultReader(tmp_path / "none.mat", opts).read()


# --------------------------------------------------------------------------------------------
# py4DSTEM
# --------------------------------------------------------------------------------------------


def test_py4dstem_reader(reader_pm, foreign):
    priors = {}
    for tag in ("ms", "ss"):
        a, path = foreign["arrays"][tag], foreign["files"][tag]
        assert reader_pm.hook.ptyrad_sniff_result(path=path) == "py4dstem"
        prior = priors[tag] = read(reader_pm, "py4dstem", path)
        p3 = a["probe"] if a["probe"].ndim == 3 else a["probe"][None]
        np.testing.assert_array_equal(prior.probe, p3)
        np.testing.assert_array_equal(
            prior.object, a["object"][None] if a["object"].ndim == 3 else a["object"][None, None]
        )
        np.testing.assert_allclose(
            prior.positions_px, a["positions"] - np.array(p3.shape[-2:]) / 2
        )  # centre -> corner
    assert priors["ms"].object.shape == (1, 3, 50, 44) and priors["ss"].probe.shape == (1, 25, 21)

    ref = need_ptyrad(foreign["ref"])  # PtyRAD's own _load_*_from_py4dstem on the same files
    for tag, prior in priors.items():
        np.testing.assert_array_equal(prior.probe, ref[f"{tag}/probe"])
        np.testing.assert_array_equal(prior.object, ref[f"{tag}/object"])
        np.testing.assert_allclose(prior.positions_px, ref[f"{tag}/positions"], atol=1e-12)


def test_py4dstem_missing_key(tmp_path):
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as f:
        f["probe"] = np.ones((8, 8), np.complex64)
        f["positions_px"] = np.zeros((4, 2))
    with pytest.raises(
        DataError, match=r"p.h5: no dataset 'object'.*holds: .*positions_px \(4, 2\), probe \(8, 8\)"
    ):
        reader_py4dstem.Py4DSTEMResultReader(path, reader_py4dstem.Py4DSTEMResultReader.Options()).read()
    assert reader_py4dstem.sniff(path) is False


# --------------------------------------------------------------------------------------------
# sniffing
# --------------------------------------------------------------------------------------------


def test_sniffing_rejects_unrelated_files(reader_pm, tmp_path):
    assert reader_pm.hook.ptyrad_sniff_result(path=TINY) is None
    assert reader_pm.hook.ptyrad_sniff_result(path=FIXTURE) == "ptyrad"
    text = tmp_path / "notes.mat"
    text.write_text("not a MATLAB file")
    assert reader_pm.hook.ptyrad_sniff_result(path=text) is None
    for module in MODULES:
        assert module.sniff(TINY) is False
        assert module.sniff(text) is False
        assert module.sniff(tmp_path / "missing.h5") is False


def test_kernel_starts_from_a_ptyrad_file(tiny_config, reader_pm):
    """scan / probe / object / tilts with source 'result' and reader 'auto' take PtyRAD's arrays."""
    src = {"source": "result", "path": str(FIXTURE)}
    cfg = tiny_config(
        scan={**src, "n_slow": 8, "n_fast": 8},
        model={
            "object": {**src, "slices": 2, "slice_thickness_A": 3.905},
            "probe": {**src, "modes": 2},
            "tilts": {**src, "mode": "per_position"},
        },
    )
    m = Reconstruction(build_config(cfg), pm=reader_pm, quiet=True).model
    prior = read(reader_pm, "ptyrad", FIXTURE)
    obj = m.object_amplitude.detach().numpy() * np.exp(1j * m.object_phase.detach().numpy())
    np.testing.assert_allclose(obj, prior.object, rtol=0, atol=1e-6)
    np.testing.assert_allclose(m.refined_positions().detach().numpy(), prior.positions_px, rtol=0, atol=1e-5)
    np.testing.assert_allclose(m.tilts.detach().numpy(), prior.tilts_mrad, rtol=0, atol=1e-6)
    assert float(m.slice_thickness.detach()) == pytest.approx(
        prior.slice_thickness_A
    )  # PtyRAD's refined dz, not 3.905
    probe = m.probe.detach().numpy()  # rescaled to the measured intensity by the kernel; same modes
    for a, b in zip(probe, prior.probe):
        assert abs(np.vdot(a, b)) / np.linalg.norm(a) / np.linalg.norm(b) > 0.9999
