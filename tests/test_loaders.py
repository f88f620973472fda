"""The built-in loaders: round trips, laziness, sniffing, errors, and end-to-end runs."""

from __future__ import annotations

import ast
import math
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.errors import DataError
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core_plugins.loaders import empad as loader_empad
from ptyrad_core_plugins.loaders import hdf5 as loader_hdf5
from ptyrad_core_plugins.loaders import mat as loader_mat
from ptyrad_core_plugins.loaders import npy as loader_npy
from ptyrad_core_plugins.loaders import tiff as loader_tiff
from ptyrad_core_plugins.loaders import zarr as loader_zarr

zarr = pytest.importorskip("zarr")
tifffile = pytest.importorskip("tifffile")
sio = pytest.importorskip("scipy.io")

DATA = Path(__file__).resolve().parents[1] / "data"
MODULES = (loader_hdf5, loader_zarr, loader_mat, loader_npy, loader_tiff, loader_empad)
OPTIONAL = {loader_zarr: "zarr", loader_tiff: "tifffile", loader_mat: "scipy"}


def _unregistered():
    base = get_plugin_manager(autoload=False)
    return [m for m in MODULES if not base.is_registered(m)]


@pytest.fixture(scope="module")
def pm():
    """A plugin manager with every loader module (registered inline until they have entry points).

    Module-scoped: building a manager takes about 0.4 s.
    """
    return get_plugin_manager(autoload=False, inline=_unregistered())


def loader(pm, name):
    return pm.registry("loader").get(name).cls


def load(pm, name, path, **options):
    cls = loader(pm, name)
    return cls(Path(path), cls.Options(**options)).load()


RNG = np.random.default_rng(0)
A3 = RNG.random((6, 8, 10), dtype=np.float32) * 100  # (N, ky, kx), ky != kx to catch transposes
A4 = RNG.random((3, 4, 8, 10), dtype=np.float32) * 100  # (Ny, Nx, ky, kx)


# -- writers: the library each format belongs to ---------------------------------------------

MATLAB_CLASS = {
    np.dtype(np.float64): b"double",
    np.dtype(np.float32): b"single",
    np.dtype(np.uint16): b"uint16",
}


def write_mat73(path, arrays: dict, matlab_class: bool = True, chunks=None):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte header, axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr in arrays.items():
            parts = name.split(".")
            group = f
            for part in parts[:-1]:
                group = group.require_group(part)
                group.attrs["MATLAB_class"] = np.bytes_(b"struct")
            if isinstance(arr, tuple):  # (shape, dtype) of an unwritten (fill value) MATLAB array
                shape, dtype = arr
                dset = group.create_dataset(parts[-1], shape=shape[::-1], dtype=dtype, chunks=chunks)
            else:
                dset = group.create_dataset(parts[-1], data=np.asarray(arr).T)
            if matlab_class:
                dset.attrs["MATLAB_class"] = np.bytes_(MATLAB_CLASS[np.dtype(dset.dtype)])
    header = (
        b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    )
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")


def write_empad(path, arr, gap_rows: int = 2, offset: int = 0):
    """Frames of ``ky x kx`` float32 each followed by ``gap_rows`` metadata rows (EMPAD layout)."""
    frames = arr.reshape(-1, *arr.shape[-2:]).astype("<f4")
    meta = RNG.random((len(frames), gap_rows, frames.shape[-1]), dtype=np.float32) * -1e6  # must be dropped
    with open(path, "wb") as f:
        f.write(b"\x07" * offset)
        f.write(np.concatenate([frames, meta], axis=1).tobytes())
    return gap_rows * frames.shape[-1] * 4


def write(fmt, tmp_path, arr):
    """Write ``arr`` in ``fmt``; return (loader name, path, options, lazy)."""
    if fmt == "hdf5":
        path = tmp_path / "m.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("entry/dp", data=arr, chunks=(1, *arr.shape[1:]))
            f["x"] = np.arange(3.0)
            f.attrs["energy_kV"] = 300
        return "hdf5", path, {}, True
    if fmt == "zarr":
        path = tmp_path / "m.zarr"
        g = zarr.open_group(str(path), mode="w")
        g.create_array("entry/dp", shape=arr.shape, dtype=arr.dtype, chunks=(1, *arr.shape[1:]))[...] = arr
        g.create_array("x", shape=(3,), dtype="f8")[...] = np.arange(3.0)
        return "zarr", path, {}, True
    if fmt == "zarr_bare":
        path = tmp_path / "bare.zarr"
        zarr.create_array(str(path), shape=arr.shape, dtype=arr.dtype)[...] = arr
        return "zarr", path, {}, True
    if fmt == "mat5":
        path = tmp_path / "m5.mat"
        sio.savemat(path, {"dp": arr, "x": np.arange(3.0)})
        return "mat", path, {}, True  # read whole, but only when the kernel loads it
    if fmt == "mat73":
        path = tmp_path / "m73.mat"
        write_mat73(path, {"dp": arr, "x": np.arange(3.0)})
        return "mat", path, {}, True
    if fmt == "npy":
        path = tmp_path / "m.npy"
        np.save(path, arr)
        return "npy", path, {}, True
    if fmt == "npz":
        path = tmp_path / "m.npz"
        np.savez(path, dp=arr, x=np.arange(3.0))
        return "npy", path, {"key": "dp"}, True  # stored uncompressed: memory-mapped
    if fmt == "tiff":
        path = tmp_path / "m.tif"
        tifffile.imwrite(path, arr, photometric="minisblack")
        return "tiff", path, {}, True
    if fmt == "tiff_zlib":
        path = tmp_path / "m.tiff"
        tifffile.imwrite(path, arr, compression="zlib", photometric="minisblack")
        return "tiff", path, {}, True  # read whole, but only when the kernel loads it
    if fmt == "empad":
        path = tmp_path / "m.raw"
        gap = write_empad(path, arr, offset=16)
        return "empad", path, {"shape": list(arr.shape), "gap": gap, "offset": 16}, True
    if fmt == "empad_detector":  # only the detector size: N (and no scan shape) from the file size
        path = tmp_path / "d.raw"
        gap = write_empad(path, arr, gap_rows=1)
        return "empad", path, {"shape": list(arr.shape[-2:]), "gap": gap}, True
    raise AssertionError(fmt)


FORMATS = [
    "hdf5",
    "zarr",
    "zarr_bare",
    "mat5",
    "mat73",
    "npy",
    "npz",
    "tiff",
    "tiff_zlib",
    "empad",
    "empad_detector",
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("arr", [A3, A4], ids=["3d", "4d"])
def test_round_trip(pm, tmp_path, fmt, arr):
    name, path, options, lazy = write(fmt, tmp_path, arr)
    meas = load(pm, name, path, **options)
    expected_shape = (A3.shape if arr is A3 else (12, 8, 10)) if fmt == "empad_detector" else arr.shape
    assert meas.shape == expected_shape
    assert str(path) in meas.source
    assert meas.in_memory is not lazy
    meas.as_patterns()
    flat = arr.reshape(-1, *arr.shape[-2:])
    assert meas.shape == flat.shape
    if arr.ndim == 4 and fmt != "empad_detector":
        assert meas.scan_shape == arr.shape[:2]
    assert np.array_equal(meas.read(np.arange(meas.n)), flat)
    assert np.array_equal(meas.read(np.array([5, 0, 2])), flat[[5, 0, 2]])  # any 3, in any order
    assert meas.in_memory is not lazy
    meas.load()
    assert meas.in_memory
    assert np.array_equal(meas.array, flat)


def test_hdf5_metadata_and_usual_key(pm, tmp_path):
    name, path, options, _ = write("hdf5", tmp_path, A3)
    with h5py.File(path, "a") as f:
        f["other"] = A3 + 1
        f["measurements"] = A3 + 2
    meas = load(pm, "hdf5", path)
    assert meas.source.endswith(":measurements") and meas.metadata["energy_kV"] == 300
    assert np.array_equal(meas.read(np.arange(6)), A3 + 2)
    assert np.array_equal(load(pm, "hdf5", path, key="/entry/dp").read(np.arange(6)), A3)


def test_hdf5_file_stays_open_while_the_measurements_live(pm, tmp_path):
    import gc

    _, path, _, _ = write("hdf5", tmp_path, A3)
    cls = loader(pm, "hdf5")
    meas = cls(path, cls.Options()).load()  # the loader object is gone after this line
    gc.collect()
    assert np.array_equal(meas.read(np.arange(6)), A3)


def test_tiff_pages_written_one_by_one_are_stacked(pm, tmp_path):
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for frame in A3:
            tif.write(frame, contiguous=False)
    meas = load(pm, "tiff", tmp_path / "pages.tif")
    assert meas.shape == A3.shape and np.array_equal(meas.read(np.arange(6)), A3)
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tif:
        tif.write(A3[0], contiguous=False)
        tif.write(A3[0, :4], contiguous=False)
    with pytest.raises(
        DataError,
        match=r"mixed.tif: the TIFF file holds 2 image series of different shapes "
        r"\(series 0 \(8, 10\), series 1 \(4, 10\)",
    ):
        load(pm, "tiff", tmp_path / "mixed.tif")


def test_loaders_take_integer_data(pm, tmp_path):
    counts = (A3 * 10).astype(np.uint16)
    np.save(tmp_path / "c.npy", counts)
    tifffile.imwrite(tmp_path / "c.tif", counts)
    for name, path in (("npy", tmp_path / "c.npy"), ("tiff", tmp_path / "c.tif")):
        meas = load(pm, name, path)
        out = meas.read(np.arange(6))
        assert out.dtype == np.float32 and np.array_equal(out, counts.astype(np.float32))


# -- MATLAB: v5 and v7.3 agree ------------------------------------------------------------


@pytest.mark.parametrize("arr", [A3.transpose(1, 2, 0), A4], ids=["ky_kx_n", "4d"])
def test_mat_v5_and_v73_give_identical_measurements(pm, tmp_path, arr):
    """The same MATLAB array in both versions gives the same Measurements, in MATLAB's order."""
    sio.savemat(tmp_path / "v5.mat", {"dp": arr, "s": {"meas": arr, "e": 300.0}})
    write_mat73(tmp_path / "v73.mat", {"dp": arr, "s.meas": arr, "s.e": np.array([[300.0]])})
    v73 = h5py.File(tmp_path / "v73.mat", "r")["dp"].shape
    assert v73 == arr.shape[::-1]  # the file really is in HDF5's reversed order
    for key in ("dp", "s.meas", "s/meas"):
        m5 = load(pm, "mat", tmp_path / "v5.mat", key=key)
        m73 = load(pm, "mat", tmp_path / "v73.mat", key=key)
        assert m5.shape == m73.shape == arr.shape
        assert not m73.in_memory and m5.in_memory is (
            key != "dp"
        )  # a top-level v5 array is read only by load()
        assert m5.streamable is (key != "dp") and m73.streamable
        for meas in (m5, m73):
            meas.as_patterns() if arr.ndim == 4 else None
        assert m5.shape == m73.shape
        assert m5.scan_shape == m73.scan_shape
        n = m5.n if arr.ndim == 4 else arr.shape[0]
        assert np.array_equal(m5.read(np.arange(n)), m73.read(np.arange(n)))
        assert np.array_equal(m5.read(np.array([2, 0])), m73.read(np.array([2, 0])))
        m73.load()
        m5.load()
        assert np.array_equal(m5.array, m73.array)
        assert np.array_equal(m73.array.reshape(arr.shape), arr)
    # auto-detection finds the same array in both (the struct field is the second 3-D/4-D one: dp wins)
    assert load(pm, "mat", tmp_path / "v5.mat").source.endswith(":dp")
    assert load(pm, "mat", tmp_path / "v73.mat").source.endswith(":dp")
    # reversed: what h5py (and PtyRAD 1.0) reads from v7.3, for both versions
    for name in ("v5.mat", "v73.mat"):
        meas = load(pm, "mat", tmp_path / name, key="dp", axis_order="reversed")
        assert meas.shape == arr.shape[::-1]


def test_mat_finds_arrays_in_structs_and_keeps_plain_hdf5_order(pm, tmp_path):
    sio.savemat(tmp_path / "s.mat", {"exp": {"data": {"cbed": A3}, "kV": 300.0}, "x": np.arange(3.0)})
    meas = load(pm, "mat", tmp_path / "s.mat")
    assert meas.source.endswith(":exp.data.cbed") and meas.shape == A3.shape
    # an HDF5 file merely named .mat (no MATLAB_class, e.g. PtyRAD's own .mat exports): stored order
    write_mat73(tmp_path / "plain.mat", {"meas": A3}, matlab_class=False)
    with h5py.File(tmp_path / "plain.mat", "r+") as f:
        del f["meas"]
        f["meas"] = A3
    assert load(pm, "mat", tmp_path / "plain.mat").shape == A3.shape
    assert load(pm, "mat", tmp_path / "plain.mat", axis_order="matlab").shape == A3.shape[::-1]


def test_reversed_axes_view_indexes_like_the_transposed_array(tmp_path):
    from ptyrad_core_plugins.loaders._files import ReversedAxes

    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["a"] = A4
        view, ref = ReversedAxes(f["a"]), A4.T
        assert view.shape == ref.shape and view.dtype == ref.dtype and len(view) == len(ref)
        for key in [
            (),
            3,
            -1,
            (2, 1),
            np.array([7, 2, 2, 5]),
            [4, 0],
            (slice(1, 6, 2), 0),
            (Ellipsis, 1),
            (slice(None), np.array([3, 0])),
            (0, 1, np.array([2, 1])),
            np.array([], dtype=int),
        ]:
            assert np.array_equal(view[key], ref[key]), key
        assert np.array_equal(np.asarray(view), ref)
        with pytest.raises(IndexError):
            view[10]


# -- laziness: reading a batch touches only that batch ----------------------------------------

BIG = (2000, 64, 64)  # 31 MiB as float32; reading 3 patterns needs 48 KiB


def big_file(fmt, tmp_path):
    """A large file that costs no disk (sparse, or unwritten chunks) in each lazy format."""
    if fmt == "npy":
        path = tmp_path / "big.npy"
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=BIG)
        mm[7] = 7.0
        del mm
        return "npy", path, {}
    if fmt == "empad":
        path = tmp_path / "big.raw"
        record = 64 * 64 * 4 + 512
        with open(path, "wb") as f:
            f.truncate(BIG[0] * record)
            f.seek(7 * record)
            f.write(np.full((64, 64), 7.0, "<f4").tobytes())
        return "empad", path, {"shape": [64, 64], "gap": 512}
    if fmt == "hdf5":
        path = tmp_path / "big.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("dp", shape=BIG, dtype="f4", chunks=(1, 64, 64))[7] = 7.0
        return "hdf5", path, {}
    if fmt == "zarr":
        path = tmp_path / "big.zarr"
        zarr.create_array(str(path), shape=BIG, dtype="f4", chunks=(1, 64, 64))[7] = 7.0
        return "zarr", path, {}
    if fmt == "mat73":
        path = tmp_path / "big.mat"
        write_mat73(path, {"dp": (BIG, np.float32)}, chunks=(64, 64, 1))
        with h5py.File(path, "r+") as f:
            f["dp"][:, :, 7] = 7.0
        return "mat", path, {}
    if fmt == "tiff":
        path = tmp_path / "big.tif"
        mm = tifffile.memmap(path, shape=BIG, dtype="f4")  # pixel data left unwritten (sparse)
        mm[7] = 7.0
        mm.flush()
        del mm
        return "tiff", path, {}
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["npy", "empad", "hdf5", "zarr", "mat73", "tiff"])
def test_lazy_loaders_read_only_the_requested_patterns(pm, tmp_path, fmt):
    name, path, options = big_file(fmt, tmp_path)
    tracemalloc.start()
    try:
        meas = load(pm, name, path, **options)
        assert meas.shape == BIG and not meas.in_memory
        block = meas.read(np.array([9, 7, 1000]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert block.shape == (3, 64, 64)
    assert np.all(block[1] == 7.0) and np.all(block[0] == 0) and np.all(block[2] == 0)
    assert peak < 4 << 20, f"reading 3 patterns allocated {peak / 2**20:.1f} MiB (the file holds 31 MiB)"


def test_empad_default_is_empad1_layout(pm, tmp_path):
    """128 x 130 float32 frames whose last 2 rows are metadata; no options needed."""
    frames = RNG.random((4, 130, 128), dtype=np.float32)
    (tmp_path / "scan.raw").write_bytes(frames.astype("<f4").tobytes())
    meas = load(pm, "empad", tmp_path / "scan.raw")
    assert meas.shape == (4, 128, 128) and not meas.in_memory
    assert np.array_equal(meas.read(np.arange(4)), frames[:, :128])
    meas = load(pm, "empad", tmp_path / "scan.raw", shape=[2, 2, 128, 128])
    assert meas.shape == (2, 2, 128, 128)
    meas.as_patterns()
    assert meas.scan_shape == (2, 2) and np.array_equal(meas.read(np.array([3])), frames[3:, :128])


# -- sniffing ------------------------------------------------------------------------------


def test_sniffing_maps_each_file_type_to_its_loader(register_inline, tmp_path):
    pm = register_inline(*_unregistered())
    cases = {}
    for fmt in ("hdf5", "zarr", "zarr_bare", "mat5", "mat73", "npy", "npz", "tiff", "tiff_zlib", "empad"):
        name, path, _, _ = write(fmt, tmp_path, A3)
        cases[path] = name
    # by content when the suffix says nothing
    (tmp_path / "h5_noext").write_bytes((tmp_path / "m.h5").read_bytes())
    (tmp_path / "npy_noext").write_bytes((tmp_path / "m.npy").read_bytes())
    (tmp_path / "tif_noext").write_bytes((tmp_path / "m.tif").read_bytes())
    (tmp_path / "m.zarr").rename(tmp_path / "store")
    del cases[tmp_path / "m.zarr"]
    h5_other = tmp_path / "m.emd"
    h5_other.write_bytes((tmp_path / "m.h5").read_bytes())
    cases.update(
        {
            tmp_path / "h5_noext": "hdf5",
            tmp_path / "npy_noext": "npy",
            tmp_path / "tif_noext": "tiff",
            tmp_path / "store": "zarr",
            h5_other: "hdf5",
        }
    )
    zipped = tmp_path / "z.zarr.zip"
    store = zarr.storage.ZipStore(str(zipped), mode="w")
    zarr.create_array(store, shape=A3.shape, dtype="f4")[...] = A3
    store.close()
    cases[zipped] = "zarr"
    (tmp_path / "notes.txt").write_text("hello")
    cases[tmp_path / "notes.txt"] = None
    for path, expected in cases.items():
        assert pm.hook.ptyrad_sniff_loader(path=path) == expected, path
    assert np.array_equal(load(pm, "zarr", zipped).read(np.arange(6)), A3)


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,filename",
    [
        ("hdf5", "bad.h5"),
        ("mat", "bad.mat"),
        ("npy", "bad.npy"),
        ("npy", "bad.npz"),
        ("tiff", "bad.tif"),
        ("zarr", "bad.zarr"),
        ("tiff", "trunc.tif"),
    ],
)
def test_unreadable_files(pm, tmp_path, name, filename):
    path = tmp_path / filename
    if filename == "bad.zarr":
        path.mkdir()  # a folder without zarr metadata
    elif filename == "trunc.tif":
        tifffile.imwrite(path, A3)
        path.write_bytes(path.read_bytes()[:12])
    else:
        path.write_bytes(b"II*\x00" + b"this is not a data file" * 10)
    with pytest.raises(DataError, match="not a readable") as err:
        load(pm, name, path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fmt", ["hdf5", "zarr", "npz", "mat5", "mat73"])
def test_missing_key_lists_the_arrays(pm, tmp_path, fmt):
    name, path, _, _ = write(fmt, tmp_path, A3)
    with pytest.raises(DataError) as err:
        load(pm, name, path, key="nope")
    msg = str(err.value)
    assert str(path) in msg and "'nope'" in msg
    dp = "entry/dp" if fmt in ("hdf5", "zarr") else "dp"
    assert f"{dp} (6, 8, 10)" in msg and "x (" in msg


def test_missing_struct_field_lists_the_fields(pm, tmp_path):
    sio.savemat(tmp_path / "s.mat", {"s": {"dp": A3, "kV": 300.0}})
    with pytest.raises(DataError, match=r"'s\.nope'.*s\.dp \(6, 8, 10\)"):
        load(pm, "mat", tmp_path / "s.mat", key="s.nope")
    with pytest.raises(DataError, match=r"s\.dp is not a scalar struct"):
        load(pm, "mat", tmp_path / "s.mat", key="s.dp.x")


def write_2d(fmt, tmp_path):
    img = A3[0]
    if fmt == "hdf5":
        with h5py.File(tmp_path / "i.h5", "w") as f:
            f["dp"] = img
        return "hdf5", tmp_path / "i.h5", {"key": "dp"}
    if fmt == "zarr":
        zarr.create_array(str(tmp_path / "i.zarr"), shape=img.shape, dtype="f4")[...] = img
        return "zarr", tmp_path / "i.zarr", {}
    if fmt == "mat5":
        sio.savemat(tmp_path / "i.mat", {"dp": img})
        return "mat", tmp_path / "i.mat", {"key": "dp"}
    if fmt == "mat73":
        write_mat73(tmp_path / "i.mat", {"dp": img})
        return "mat", tmp_path / "i.mat", {"key": "dp"}
    if fmt == "npy":
        np.save(tmp_path / "i.npy", img)
        return "npy", tmp_path / "i.npy", {}
    if fmt == "npz":
        np.savez(tmp_path / "i.npz", dp=img)
        return "npy", tmp_path / "i.npz", {"key": "dp"}
    if fmt == "tiff":
        tifffile.imwrite(tmp_path / "i.tif", img)
        return "tiff", tmp_path / "i.tif", {}
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["hdf5", "zarr", "mat5", "mat73", "npy", "npz", "tiff"])
def test_two_dimensional_arrays_are_refused(pm, tmp_path, fmt):
    name, path, options = write_2d(fmt, tmp_path)
    with pytest.raises(DataError, match=r"must be 3-D \(N, ky, kx\) or 4-D .* got shape \(8, 10\)") as err:
        load(pm, name, path, **options)
    assert str(path) in str(err.value)
    if "key" in options:
        assert f"{path}:dp" in str(err.value)


@pytest.mark.parametrize("fmt", ["hdf5", "zarr", "npz", "mat5", "mat73"])
def test_ambiguous_auto_detection_asks_for_a_key(pm, tmp_path, fmt):
    arrays = {"a": A3, "b": A3 + 1}
    path = (
        tmp_path / {"hdf5": "f.h5", "zarr": "f.zarr", "npz": "f.npz", "mat5": "f.mat", "mat73": "f.mat"}[fmt]
    )
    if fmt == "hdf5":
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v
    elif fmt == "zarr":
        g = zarr.open_group(str(path), mode="w")
        for k, v in arrays.items():
            g.create_array(k, shape=v.shape, dtype="f4")[...] = v
    elif fmt == "npz":
        np.savez(path, **arrays)
    elif fmt == "mat5":
        sio.savemat(path, arrays)
    else:
        write_mat73(path, arrays)
    name = {"hdf5": "hdf5", "zarr": "zarr", "npz": "npy", "mat5": "mat", "mat73": "mat"}[fmt]
    with pytest.raises(
        DataError, match=r"set data.options.key; 3-D/4-D .*a \(6, 8, 10\), b \(6, 8, 10\)"
    ) as err:
        load(pm, name, path)
    assert str(path) in str(err.value)


def test_empad_size_errors(pm, tmp_path):
    path = tmp_path / "scan.raw"
    path.write_bytes(np.zeros((3, 130, 128), "<f4").tobytes() + b"\0" * 100)
    with pytest.raises(
        DataError, match=r"scan.raw: 199780 bytes is not a whole number of frames .* 3 frames and 100 bytes"
    ):
        load(pm, "empad", path)
    path.write_bytes(np.zeros((3, 130, 128), "<f4").tobytes())
    with pytest.raises(
        DataError,
        match=r"shape \[4, 128, 128\] needs 266240 bytes .* has 199680 bytes \(the file holds 3 whole",
    ):
        load(pm, "empad", path, shape=[4, 128, 128])
    with pytest.raises(DataError, match="not a whole number of frames"):
        load(pm, "empad", path, offset=8)
    with pytest.raises(ValueError, match="shape must be 2 to 4 positive integers"):
        loader(pm, "empad").Options(shape=[128])


def test_npy_key_and_unsupported_dtypes(pm, tmp_path):
    np.save(tmp_path / "a.npy", A3)
    with pytest.raises(
        DataError, match=r"a.npy: data.options.key 'dp' applies to .npz archives only.*\(6, 8, 10\)"
    ):
        load(pm, "npy", tmp_path / "a.npy", key="dp")
    np.save(tmp_path / "c.npy", A3.astype(np.complex64))
    with pytest.raises(
        DataError,
        match=r"c.npy: measurements must be real numbers, got dtype complex64 \(shape \(6, 8, 10\)\)",
    ):
        load(pm, "npy", tmp_path / "c.npy")
    np.save(tmp_path / "o.npy", np.empty((2, 2, 2), dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="o.npy: not a readable .npy file"):
        load(pm, "npy", tmp_path / "o.npy")


@pytest.mark.parametrize("fmt", ["npy", "empad", "hdf5", "mat73"])
def test_non_finite_values_surface_with_the_file_name(pm, tmp_path, fmt):
    arr = A3.copy()
    arr[4, 2, 3] = np.nan
    arr[5, 0, 0] = np.inf
    name, path, options, _ = write(fmt, tmp_path, arr)
    meas = load(pm, name, path, **options)
    with pytest.raises(DataError, match=r"2 NaN or infinite values \(first at pattern 4") as err:
        meas.check_values()
    assert str(path) in str(err.value)


@pytest.mark.parametrize("module", list(OPTIONAL), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_optional_packages_are_imported_lazily(pm, tmp_path, monkeypatch, module):
    package = OPTIONAL[module]
    tree = ast.parse(Path(module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert package not in names
    fmt = {"zarr": "zarr", "tifffile": "tiff", "scipy": "mat5"}[package]
    name, path, options, _ = write(fmt, tmp_path, A3)
    for mod in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(DataError, match=rf"needs the '{package}' package: pip install {package}"):
        load(pm, name, path, **options)
    if package == "scipy":  # v7.3 files need h5py only
        _, path, options, _ = write("mat73", tmp_path, A3)
        assert np.array_equal(load(pm, "mat", path, **options).read(np.arange(6)), A3)


# -- end to end ----------------------------------------------------------------------------


def _tiny_measurements():
    with h5py.File(DATA / "tiny.h5", "r") as f:
        return f["measurements"][()]  # (8, 8, 64, 64)


@pytest.mark.parametrize(
    "fmt,budget_MB", [("npy", 4096), ("npy", 0.5), ("empad", 4096)], ids=["npy", "npy_streamed", "empad"]
)
def test_end_to_end_reconstruction(pm, tmp_path, tiny_config, fmt, budget_MB):
    from ptyrad_core.engine.loop import Reconstruction

    meas = _tiny_measurements()
    if fmt == "npy":
        path, data = tmp_path / "tiny.npy", {"loader": "npy"}
        np.save(path, meas.reshape(64, 64, 64))
    else:
        path = tmp_path / "tiny.raw"
        gap = write_empad(path, meas)
        data = {"loader": "auto", "options": {"shape": [8, 8, 64, 64], "gap": gap}}  # sniffed: .raw -> empad
    cfg = tiny_config(data={"path": str(path), "memory_budget_MB": budget_MB, **data})
    rec = Reconstruction(build_config(cfg), pm=pm, quiet=True)
    assert rec.measurements.in_memory is (budget_MB > 1)  # tiny is 1 MiB as float32
    rec.run()
    losses = list(rec.history["loss"])
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


def test_an_in_memory_load_of_a_read_only_memory_map_owns_writable_memory(pm, tmp_path):
    data = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    np.save(tmp_path / "m.npy", data)
    m = load(pm, "npy", tmp_path / "m.npy")
    m.load()
    assert m.array.flags.writeable and not isinstance(m.array, np.memmap) and np.array_equal(m.array, data)
