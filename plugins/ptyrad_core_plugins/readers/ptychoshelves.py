"""Result reader `ptychoshelves`: start from a PtychoShelves / fold_slice `.mat` reconstruction.

Expected layout (fold_slice's `NiterNNN.mat` as saved by its GPU engines; MATLAB axis order):

| variable | meaning |
| --- | --- |
| `probe` | (Ny, Nx), (Ny, Nx, pmode) or (Ny, Nx, pmode, vp) complex |
| `object` | (Ny, Nx) or (Ny, Nx, Nz) complex; (Ny, Nx, 1, Nz) also read |
| `outputs.probe_positions` (optional) | (N, 2) (x, y) in pixels about the object centre; (N, 2, k) for fly scans (the first set is taken) |
| `p.dx_spec` (optional; `outputs.pixel_size` as fallback) | pixel size, 1 or 2 values |
| `outputs.z_distance` (optional; `p.multi_slice_param.z_distance` as fallback) | slice distances |

MATLAB v7.3 files are HDF5 (read with h5py, every array's axes reversed back to MATLAB order,
`('real', 'imag')` compounds made complex); older files are read with `scipy.io.loadmat`
(scipy is imported only then; `pip install scipy`).

Conversions, as PtyRAD's initializer does them (`_load_probe_from_ptyshv`,
`_load_obj_from_ptyshv`, `_load_pos_from_ptyshv`):

- probe: a 4-D probe keeps its first variable-probe mode `[..., 0]`, a 2-D one gets a mode axis;
  then `(Ny, Nx, pmode) -> (pmode, Ny, Nx)`.
- object: `(Ny, Nx) -> (1, 1, Ny, Nx)`, `(Ny, Nx, Nz) -> (1, Nz, Ny, Nx)`.
- positions: `pos = probe_positions[:, [1, 0]] + ceil(obj_shape / 2 - probe_shape / 2) - 1` with
  `obj_shape`, `probe_shape` the lateral (Ny, Nx) sizes: (x, y) about the object centre become
  (y, x) of the window's top-left corner, MATLAB's 1-based indexing taken off.

One deliberate difference: PtyRAD reads v5 files with `squeeze_me=True`, which turns a
single-mode probe with variable-probe modes `(Ny, Nx, 1, vp)` into `vp` probe modes. This
reader keeps MATLAB's shapes (no squeeze), so that probe is read as one mode; a singleton third
object axis `(Ny, Nx, 1, Nz)`, which PtyRAD's squeeze removes, is removed here too. On every other
shape the result is PtyRAD's.

Units of dx and slice thickness: fold_slice's electron scripts use Angstrom, PtychoShelves (and
some fold_slice scripts) metres. With `length_unit: auto` a value below 1e-6 is taken as metres
(an electron pixel of 1e-6 Angstrom does not exist), anything else as Angstrom. Different y and x
pixel sizes, or slices of different thickness, leave `dx_A` / `slice_thickness_A` unset.

Sniffing: a MATLAB file (`.mat` suffix or a `MATLAB` header) whose top-level variables include
`probe` and `object`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from ptyrad_core.plugin import DataError, Field, PluginOptions, PriorResult, ResultReader, hookimpl

from ._files import as_complex, h5_contents, is_hdf5, require_file

NAME = "ptychoshelves"
WHAT = "a PtychoShelves / fold_slice .mat reconstruction (variables probe, object, outputs.probe_positions)"
POSITIONS_KEY = "outputs.probe_positions"
DX_KEYS = ("p.dx_spec", "outputs.pixel_size")
DZ_KEYS = ("outputs.z_distance", "p.multi_slice_param.z_distance")


class _MatFile:
    """Nested variables of a MATLAB file (v5 or v7.3) by dotted name, in MATLAB axis order."""

    def __init__(self, path: Path):
        self.path = path
        self.v73 = is_hdf5(path)
        if self.v73:
            self._h5 = h5py.File(path, "r")
        else:
            try:
                from scipy.io import loadmat
            except ImportError:
                raise DataError(
                    f"{path}: reading a MATLAB v5 .mat file needs scipy (pip install scipy)"
                ) from None
            tops = sorted({k.split(".")[0] for k in ("probe", "object", POSITIONS_KEY, *DX_KEYS, *DZ_KEYS)})
            try:
                self._mat = loadmat(path, variable_names=tops, squeeze_me=False, struct_as_record=True)
            except Exception as exc:
                raise DataError(
                    f"{path}: not a readable MATLAB file, expected {WHAT} ({type(exc).__name__}: {exc})"
                ) from None

    def close(self):
        if self.v73:
            self._h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get(self, key: str) -> np.ndarray | None:
        parts = key.split(".")
        if self.v73:
            obj = self._h5.get("/".join(parts))
            if not isinstance(obj, h5py.Dataset):
                return None
            arr = obj[()]
            if obj.attrs.get("MATLAB_empty"):
                return None
            arr = np.asarray(arr)
            return arr.transpose(range(arr.ndim)[::-1])  # h5py sees MATLAB's column-major arrays reversed
        value = self._mat.get(parts[0])
        for part in parts[1:]:
            value = _unwrap(value)
            if (
                not isinstance(value, np.ndarray)
                or value.dtype.names is None
                or part not in value.dtype.names
            ):
                return None
            value = value[part]
        value = _unwrap(value)
        if not isinstance(value, np.ndarray) or value.dtype == object or value.dtype.names is not None:
            return None
        return value

    def contents(self) -> str:
        if self.v73:
            return h5_contents(self._h5)
        try:
            from scipy.io import whosmat

            return ", ".join(f"{name} {shape} {cls}" for name, shape, cls in whosmat(self.path)) or "nothing"
        except Exception:
            return ", ".join(k for k in self._mat if not k.startswith("__")) or "nothing"


def _unwrap(value):
    """A v5 struct field or cell is a 1x1 object / record array around the real value."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    return value


class PtychoShelvesResultReader(ResultReader):
    """PtychoShelves / fold_slice `.mat` output (v5 or v7.3)."""

    class Options(PluginOptions):
        length_unit: Literal["auto", "A", "m"] = Field(
            "auto",
            description="Unit of p.dx_spec and the slice distances: 'A', 'm', "
            "or 'auto' (below 1e-6 means metres).",
        )

    def read(self) -> PriorResult:
        path = require_file(self.path, "PtychoShelves .mat reconstruction")
        with _MatFile(path) as mat:
            raw_probe = mat.get("probe")
            raw_obj = mat.get("object")
            for name, value in (("probe", raw_probe), ("object", raw_obj)):
                if value is None:
                    raise DataError(
                        f"{path}: no variable {name!r}, expected {WHAT}; the file holds: {mat.contents()}"
                    )
            raw_pos = mat.get(POSITIONS_KEY)
            dx_raw = next((v for v in (mat.get(k) for k in DX_KEYS) if v is not None), None)
            dz_raw = next((v for v in (mat.get(k) for k in DZ_KEYS) if v is not None), None)

        probe = as_complex(raw_probe)
        if probe.ndim == 4:
            probe = probe[..., 0]  # first variable-probe mode, as PtyRAD
        elif probe.ndim == 2:
            probe = probe[..., None]
        if probe.ndim != 3:
            raise DataError(
                f"{path}: probe has shape {raw_probe.shape}; "
                "expected (Ny, Nx), (Ny, Nx, pmode) or (Ny, Nx, pmode, vp)"
            )
        obj = as_complex(raw_obj)
        if obj.ndim == 4 and obj.shape[2] == 1:
            obj = obj[:, :, 0, :]
        if obj.ndim == 2:
            obj4 = obj[None, None]
        elif obj.ndim == 3:
            obj4 = obj[None].transpose(0, 3, 1, 2)
        else:
            raise DataError(f"{path}: object has shape {raw_obj.shape}; expected (Ny, Nx) or (Ny, Nx, Nz)")

        positions = None
        if raw_pos is not None:
            pp = np.asarray(raw_pos, dtype=np.float64)
            if pp.ndim == 3:
                pp = pp[:, :, 0]  # fly scan: one set per sub-position; take the first
            if pp.ndim != 2 or pp.shape[1] != 2:
                raise DataError(
                    f"{path}: {POSITIONS_KEY} has shape {np.shape(raw_pos)}; expected (N, 2) (x, y) pixels"
                )
            # PtyRAD's _load_pos_from_ptyshv, exactly
            offset = np.ceil(np.array(obj.shape[:2]) / 2 - np.array(probe.shape[:2]) / 2) - 1
            positions = pp[:, [1, 0]] + offset

        dx = _uniform(dx_raw)
        dz = _uniform(dz_raw)
        unit = self.options.length_unit
        if unit == "auto":
            ref = dx if dx is not None else dz
            unit = "m" if ref is not None and ref < 1e-6 else "A"
        scale = 1e10 if unit == "m" else 1.0
        return PriorResult(
            source=str(path),
            probe=np.ascontiguousarray(probe.transpose(2, 0, 1)).astype(np.complex64),
            object=np.ascontiguousarray(obj4).astype(np.complex64),
            positions_px=positions,
            dx_A=None if dx is None else dx * scale,
            slice_thickness_A=None if dz is None else dz * scale,
        )


def _uniform(value) -> float | None:
    """The common value of the finite positive entries, or None if there are none or they differ."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if arr.size == 0 or not np.allclose(arr, arr[0], rtol=1e-6, atol=0):
        return None
    return float(arr[0])


def _matlab_header(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(116)
    except OSError:
        return b""


def sniff(path: Path) -> bool:
    path = Path(path)
    if not path.is_file():
        return False
    header = _matlab_header(path)
    if path.suffix.lower() != ".mat" and not header.startswith(b"MATLAB"):
        return False
    try:
        if is_hdf5(path):
            with h5py.File(path, "r") as f:
                return isinstance(f.get("probe"), h5py.Dataset) and isinstance(f.get("object"), h5py.Dataset)
        try:
            from scipy.io import whosmat
        except (
            ImportError
        ):  # cannot look inside; a MATLAB v5 file is most likely ours (read() says scipy is needed)
            return header.startswith(b"MATLAB")
        names = {name for name, _, _ in whosmat(path)}
        return {"probe", "object"} <= names
    except Exception:
        return False


@hookimpl
def ptyrad_register_result_readers(registry):
    registry.add(NAME, PtychoShelvesResultReader)


@hookimpl
def ptyrad_sniff_result(path):
    return NAME if sniff(path) else None
