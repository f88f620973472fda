"""Result reader `ptyrad`: start from a PtyRAD 1.0 model file (`model_iterNNNN.hdf5`).

PtyRAD's `save_results` writes, when `recon_params.save_result` lists `'model'`, an HDF5
file of nested groups (`ptyrad.io.save.make_save_dict` / `save_dict_to_hdf5`; `None` is the
string `'__NONE__'`). The parts read here, and the conversions PtyRAD's own initializer applies
when it restarts from such a file (`_load_probe_from_ptyrad`, `_load_obj_from_ptyrad`,
`_load_pos_from_ptyrad`, `init_obj_tilts` with `tilt_source: 'PtyRAD'`):

| file | PriorResult | conversion |
| --- | --- | --- |
| `optimizable_tensors/probe` (pmode, Ny, Nx) complex64 | `probe` | none: PtyRAD stores the complex view (`get_complex_probe_view`); a real view (..., 2) is made complex |
| `optimizable_tensors/obja`, `objp` (omode, Nz, Ny, Nx) | `object` | `obja * exp(i objp)` |
| `model_attributes/crop_pos` (N, 2) int32, `optimizable_tensors/probe_pos_shifts` (N, 2) | `positions_px` | `crop_pos + probe_pos_shifts`: (y, x) of the window's top-left corner, as ours |
| `optimizable_tensors/obj_tilts` (1 or N, 2) | `tilts_mrad` | none (mrad, (t_y, t_x)) |
| `model_attributes/omode_occu` | `occupancy` | none |
| `model_attributes/dx` | `dx_A` | none for electrons (Angstrom); x 1e10 if `params/init_params/probe_illum_type` is 'xray' (metres) |
| `optimizable_tensors/slice_thickness` (refined; `model_attributes/slice_thickness` as fallback) | `slice_thickness_A` | as dx |

PtyRAD's tilt convention (propagator `H exp(i dz (Ky tan t_y + Kx tan t_x))`, tilts in mrad) and
its sub-pixel probe shift (`exp(-2 pi i (f_y k_y + f_x k_x))`) are the ones ptyrad_core uses, so
tilts and positions carry over unchanged. Legacy `.pt` files (PtyRAD before 0.1.0b7) are not
read (they are pickles).

Sniffing: an HDF5 file with the groups `optimizable_tensors` and `model_attributes`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ptyrad_core.plugin import DataError, PluginOptions, PriorResult, ResultReader, hookimpl

from ._files import as_complex, h5_contents, h5_get, is_hdf5, open_h5, scalar

NAME = "ptyrad"
WHAT = "a PtyRAD model file (groups optimizable_tensors, model_attributes)"


class PtyradResultReader(ResultReader):
    """PtyRAD 1.0's saved model (`model_iterNNNN.hdf5`)."""

    class Options(PluginOptions):
        pass

    def read(self) -> PriorResult:
        path = self.path
        with open_h5(path, WHAT) as f:
            for group in ("optimizable_tensors", "model_attributes"):
                if not isinstance(f.get(group), h5py.Group):
                    raise DataError(
                        f"{path}: no group {group!r}, expected {WHAT}; the file holds: {h5_contents(f)}"
                    )

            def get(key, expected):
                return h5_get(f, key, path, expected)

            probe = np.asarray(get("optimizable_tensors/probe", "the probe (pmode, Ny, Nx) complex"))
            if (
                not np.iscomplexobj(probe)
                and probe.dtype.names is None
                and probe.ndim == 4
                and probe.shape[-1] == 2
            ):
                probe = probe[..., 0] + 1j * probe[..., 1]  # real view (pmode, Ny, Nx, 2)
            probe = as_complex(probe)
            if probe.ndim == 2:
                probe = probe[None]
            obja = get("optimizable_tensors/obja", "the object amplitude (omode, Nz, Ny, Nx)")
            objp = get("optimizable_tensors/objp", "the object phase (omode, Nz, Ny, Nx)")
            crop = get("model_attributes/crop_pos", "the integer window corners (N, 2)")
            shifts = get("optimizable_tensors/probe_pos_shifts", "the sub-pixel position shifts (N, 2)")
            tilts = get("optimizable_tensors/obj_tilts", "the object tilts (1 or N, 2) mrad")
            occu = f.get("model_attributes/omode_occu")
            occu = None if not isinstance(occu, h5py.Dataset) else scalar_or_array(occu[()])
            scale = (
                1e10 if _illum_type(f) == "xray" else 1.0
            )  # PtyRAD lengths: Angstrom (electron) or m (x-ray)
            dx = _first_scalar(f, ["model_attributes/dx"])
            dz = _first_scalar(f, ["optimizable_tensors/slice_thickness", "model_attributes/slice_thickness"])
        if obja.shape != objp.shape or obja.ndim != 4:
            raise DataError(
                f"{path}: obja {obja.shape} and objp {objp.shape} must both be (omode, Nz, Ny, Nx)"
            )
        if crop.shape != shifts.shape or crop.ndim != 2 or crop.shape[1] != 2:
            raise DataError(
                f"{path}: crop_pos {crop.shape} and probe_pos_shifts {shifts.shape} must both be (N, 2)"
            )
        obj = (obja.astype(np.float64) * np.exp(1j * objp.astype(np.float64))).astype(np.complex64)
        return PriorResult(
            source=str(path),
            probe=probe.astype(np.complex64),
            object=obj,
            positions_px=crop.astype(np.float64) + shifts.astype(np.float64),
            tilts_mrad=np.asarray(tilts, dtype=np.float64).reshape(-1, 2),
            occupancy=occu,
            dx_A=None if dx is None else dx * scale,
            slice_thickness_A=None if dz is None else dz * scale,
        )


def scalar_or_array(value) -> np.ndarray | None:
    try:
        return np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        return None


def _first_scalar(f: h5py.File, keys: list[str]) -> float | None:
    for key in keys:
        obj = f.get(key)
        if isinstance(obj, h5py.Dataset):
            value = scalar(obj[()])
            if value is not None:
                return value
    return None


def _illum_type(f: h5py.File) -> str:
    obj = f.get("params/init_params/probe_illum_type")
    if not isinstance(obj, h5py.Dataset):
        return "electron"
    value = obj[()]
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def sniff(path: Path) -> bool:
    if not is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return isinstance(f.get("optimizable_tensors"), h5py.Group) and isinstance(
                f.get("model_attributes"), h5py.Group
            )
    except Exception:
        return False


@hookimpl
def ptyrad_register_result_readers(registry):
    registry.add(NAME, PtyradResultReader)


@hookimpl
def ptyrad_sniff_result(path):
    return NAME if sniff(path) else None
