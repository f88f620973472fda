"""ptyrad-rsciio: the loader on 4D-STEM files written by RosettaSciIO itself (HyperSpy .hspy and
NCEM .emd), its errors, sniffing, and a reconstruction on tiny.h5's patterns stored as .hspy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ptyrad_rsciio")
hspy = pytest.importorskip("rsciio.hspy")
emd = pytest.importorskip("rsciio.emd")

from ptyrad_rsciio import RsciioLoader  # noqa: E402

from ptyrad_core.plugin import DataError  # noqa: E402


def signal_dict(data: np.ndarray, title: str = "4D-STEM", energy_kV: float = 300.0) -> dict:
    """A RosettaSciIO signal dictionary (what HyperSpy hands its writers): signal axes last."""
    names = (
        ["scan_y", "scan_x", "ky", "kx"][-data.ndim :]
        if data.ndim <= 4
        else [f"a{i}" for i in range(data.ndim)]
    )
    n_sig = min(2, data.ndim)
    axes = [
        {
            "name": n,
            "size": s,
            "scale": 0.02 if i >= data.ndim - n_sig else 0.4,
            "offset": 0.0,
            "units": "1/A" if i >= data.ndim - n_sig else "A",
            "navigate": i < data.ndim - n_sig,
        }
        for i, (n, s) in enumerate(zip(names, data.shape))
    ]
    return {
        "data": data,
        "axes": axes,
        "original_metadata": {},
        "tmp_parameters": {},
        "learning_results": {},
        "models": {},
        "attributes": {"_lazy": False},
        "package_info": {"name": "rsciio", "version": "0"},
        "metadata": {
            "General": {"title": title},
            "Signal": {"signal_type": ""},
            "Acquisition_instrument": {"TEM": {"beam_energy": energy_kV, "convergence_angle": 21.4}},
        },
    }


def write_hspy(path: Path, data: np.ndarray, **kw) -> Path:
    hspy.file_writer(str(path), signal_dict(data, **kw), show_progressbar=False)
    return path


@pytest.fixture
def stack4d():
    return (np.random.default_rng(0).random((3, 4, 8, 8)) * 100).astype(np.float32)


def load(path, **options):
    return RsciioLoader(Path(path), RsciioLoader.Options(**options)).load()


@pytest.mark.parametrize("lazy", [True, False])
def test_hspy_written_by_rosettasciio(tmp_path, stack4d, lazy):
    meas = load(write_hspy(tmp_path / "scan.hspy", stack4d), lazy=lazy)
    assert meas.shape == (3, 4, 8, 8) and meas.in_memory is (not lazy)
    assert meas.metadata["energy_kV"] == 300.0 and meas.metadata["conv_angle_mrad"] == 21.4
    assert [a["units"] for a in meas.metadata["axes"]] == ["A", "A", "1/A", "1/A"]
    flat = stack4d.reshape(12, 8, 8)
    meas.as_patterns()
    np.testing.assert_array_equal(meas.read(np.array([5, 0, 11, 5])), flat[[5, 0, 11, 5]])  # streamed rows
    meas.load()
    np.testing.assert_array_equal(meas.array, flat)


def test_emd_written_by_rosettasciio_3d_stack(tmp_path):
    stack = (np.random.default_rng(1).random((6, 8, 8)) * 10).astype(np.float32)
    path = tmp_path / "stack.emd"
    emd.file_writer(str(path), signal_dict(stack))
    meas = load(path)
    meas.load()
    np.testing.assert_array_equal(meas.array, stack)
    assert "EMD" in meas.metadata["reader"]


def test_sniffing_prefers_rsciio_for_hspy_but_leaves_emd_to_hdf5(tmp_path, stack4d):
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    info = pm.info["ptyrad_rsciio"]
    assert (info.source, info.distribution) == ("installed package", "ptyrad-rsciio")
    assert pm.hook.ptyrad_sniff_loader(path=write_hspy(tmp_path / "a.hspy", stack4d)) == "rsciio"
    (tmp_path / "b.dm4").write_bytes(b"\0" * 16)
    assert pm.hook.ptyrad_sniff_loader(path=tmp_path / "b.dm4") == "rsciio"
    path = tmp_path / "c.emd"
    emd.file_writer(str(path), signal_dict(stack4d))
    assert pm.hook.ptyrad_sniff_loader(path=path) == "hdf5"


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.hspy' does not exist"):
        load(tmp_path / "nope.hspy")


@pytest.mark.parametrize("shape", [(8, 8), (16,), (2, 2, 3, 8, 8)])
def test_wrong_dimensionality_names_the_shape(tmp_path, shape):
    path = write_hspy(tmp_path / "image.hspy", np.ones(shape, np.float32), title="image")
    with pytest.raises(
        DataError,
        match=r"wrong dimensionality.*image " + re_shape(shape) + r".*4-D \(scan y, scan x, ky, kx\) or 3-D",
    ):
        load(path)
    with pytest.raises(DataError, match=r"signal 0 has shape"):
        load(path, signal=0)


def re_shape(shape) -> str:
    return r"\(" + r", ".join(map(str, shape)) + (r",\)" if len(shape) == 1 else r"\)")


def test_a_file_with_several_signals(tmp_path, stack4d):
    """An overview image next to the scan (as in a Velox file): the only 4-D signal is used."""
    import h5py

    path = write_hspy(tmp_path / "session.hspy", np.ones((8, 8), np.float32), title="overview")
    with h5py.File(path, "a") as f:  # merge signals that RosettaSciIO wrote into one file
        for title, data in (("scan", stack4d), ("scan2", stack4d[:1])):
            with h5py.File(write_hspy(tmp_path / f"{title}.hspy", data, title=title), "r") as g:
                g.copy(f"Experiments/{title}", f["Experiments"])
            if title == "scan":
                meas = load(path)
                assert meas.source == f"{path}:signal 1" and meas.shape == stack4d.shape
    with pytest.raises(
        DataError,
        match=r"several 3-D / 4-D signals \(0: overview \(8, 8\), 1: scan \(3, 4, 8, 8\), "
        r"2: scan2 \(1, 4, 8, 8\)\); set data.options.signal",
    ):
        load(path)
    assert load(path, signal=2).shape == (1, 4, 8, 8)
    with pytest.raises(DataError, match="signal 0 has shape"):
        load(path, signal=0)


def test_format_and_option_errors(tmp_path, stack4d):
    path = write_hspy(tmp_path / "scan.hspy", stack4d)
    with pytest.raises(DataError, match=r"no format 'hyperspy'.*HSPY"):
        load(path, format="hyperspy")
    assert load(path, format="hspy").shape == (3, 4, 8, 8)
    with pytest.raises(DataError, match=r"reader_options: .*HSPY reader rejected.*navigation_shape"):
        load(path, reader_options={"navigation_shape": (3, 4)})
    with pytest.raises(DataError, match=r"holds 1 signal.*index 2 is out of range"):
        load(path, signal=2)
    ambiguous = tmp_path / "scan.hdf5"
    path.rename(ambiguous)
    with pytest.raises(DataError, match=r"'\.hdf5' files are read by several RosettaSciIO formats.*HSPY"):
        load(ambiguous)
    assert load(ambiguous, format="HSPY").shape == (3, 4, 8, 8)
    (tmp_path / "x.xyz").write_text("?")
    with pytest.raises(DataError, match=r"reads no '\.xyz' files"):
        load(tmp_path / "x.xyz")
    (tmp_path / "broken.hspy").write_text("not hdf5")
    with pytest.raises(DataError, match=r"broken\.hspy: RosettaSciIO's HSPY reader could not read it"):
        load(tmp_path / "broken.hspy")
    with pytest.raises(Exception, match="extra"):
        RsciioLoader.Options(keyy="measurements")


def tiny_h5() -> Path:
    if os.environ.get("PTYRAD_CORE_TINY_H5"):
        return Path(os.environ["PTYRAD_CORE_TINY_H5"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "data" / "tiny.h5").is_file():
            return parent / "data" / "tiny.h5"
    pytest.skip("data/tiny.h5 not found (set PTYRAD_CORE_TINY_H5)")


def test_reconstruction_from_hspy_streamed_equals_the_hdf5_run(tmp_path):
    import h5py

    import ptyrad_core
    from ptyrad_core.engine.results import read_result

    tiny = tiny_h5()
    with h5py.File(tiny, "r") as f:
        patterns = f["measurements"][()]
    path = write_hspy(tmp_path / "tiny.hspy", patterns)

    def config(data: dict, out: str) -> dict:
        return {
            "data": data,
            "experiment": {
                "energy_kV": 300,
                "conv_angle_mrad": 21.4,
                "dx_A": 0.19525,
                "aberrations": {"defocus": 100},
            },
            "scan": {
                "source": "file",
                "path": str(tiny),
                "key": "positions_nominal_px",
                "n_slow": 8,
                "n_fast": 8,
            },
            "model": {"object": {"slices": 2, "slice_thickness_A": 3.905}},
            "loss": [{"name": "gaussian"}],
            "recon": {"iterations": 2, "batch_size": 16},
            "output": {"dir": str(tmp_path / out), "figures": False},
        }

    # loader auto: the .hspy file is sniffed; a tiny memory budget streams it through dask per batch
    run = ptyrad_core.run(config({"path": str(path), "memory_budget_MB": 0.1}, "rsciio"))
    assert run.data.measurements.source == str(path) and not run.data.measurements.in_memory
    reference = ptyrad_core.run(
        config({"path": str(tiny), "loader": "hdf5", "options": {"key": "measurements"}}, "hdf5")
    )
    a, b = read_result(run.result_path), read_result(reference.result_path)
    assert a["attrs"]["config"]["data"]["loader"] in ("auto", "rsciio")
    np.testing.assert_allclose(a["history/loss"], b["history/loss"], rtol=1e-6)
    np.testing.assert_allclose(a["object/phase"], b["object/phase"], atol=1e-6)


def write_mib(path: Path, frames: np.ndarray) -> Path:
    """A Quantum Detectors Merlin .mib file: per frame a 384-byte ASCII header, then big-endian U16 pixels."""
    n, ky, kx = frames.shape
    out = bytearray()
    for i, frame in enumerate(frames):
        head = (
            f"MQ1,{i + 1:06d},00384,01,{kx:04d},{ky:04d},U16,   1x1,01,"
            "2020-05-18 16:51:49.971626,0.000555,0,0,0,"
            "MQ1A,2020-05-18T14:51:49.971626178Z,555000ns,12,"
        )
        out += head.encode().ljust(384, b"\0") + frame.astype(">u2").tobytes()
    path.write_bytes(bytes(out))
    return path


@pytest.mark.parametrize("lazy", [True, False])
def test_reader_options_from_yaml_lists_become_tuples(tmp_path, lazy):
    """`navigation_shape: [4, 2]` in YAML is a list; RosettaSciIO's Merlin reader accepts only a tuple."""
    import yaml

    pytest.importorskip("rsciio.quantumdetector")
    frames = (np.arange(8 * 16 * 16).reshape(8, 16, 16) % 1000).astype(np.uint16)
    path = write_mib(tmp_path / "scan.mib", frames)
    options = yaml.safe_load(f"{{lazy: {str(lazy).lower()}, reader_options: {{navigation_shape: [4, 2]}}}}")
    assert options["reader_options"]["navigation_shape"] == [4, 2]
    meas = load(path, **options)
    assert meas.shape == (2, 4, 16, 16)  # RosettaSciIO: navigation_shape is (x, y)
    meas.as_patterns()
    meas.load()
    np.testing.assert_array_equal(
        meas.array, frames[:, ::-1].astype(np.float32)
    )  # the Merlin reader flips rows


def test_as_tuples_is_recursive():
    from ptyrad_rsciio.plugin import as_tuples

    assert as_tuples({"a": [1, [2, 3]], "b": {"c": [4]}, "d": "x"}) == {
        "a": (1, (2, 3)),
        "b": {"c": (4,)},
        "d": "x",
    }
