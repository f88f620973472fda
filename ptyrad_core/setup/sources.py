"""Initial arrays from files: generic array files, previous reconstructions, object depth operations.

- :func:`read_array` reads one array from ``.npy``, ``.npz``, HDF5 (``.h5``, ``.hdf5``, MATLAB
  v7.3 ``.mat``, with a key), MATLAB v5 ``.mat`` (with scipy), through the loader plugins, or
  from text files.
- :func:`read_prior` reads a previous reconstruction with a result-reader plugin.
- :func:`z_crop`, :func:`z_pad`, :func:`z_resample` change a complex object along depth.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from ptyrad_core.kernel.errors import ConfigError, DataError, PluginError
from ptyrad_core.kernel.prior import PriorResult


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes, or of every file under a folder (names and bytes)."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def check_array(arr, label: str, where: str) -> np.ndarray:
    """``arr`` as a NumPy array of numbers, non-empty and finite; else a DataError naming ``where``
    (the YAML path), ``label`` (file and key) and the first bad element (its row and index)."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biufc":
        raise DataError(
            f"{where}: {label} holds {arr.dtype} values (shape {arr.shape}); expected an array of numbers"
        )
    if arr.size == 0:
        raise DataError(f"{where}: {label} is empty (shape {arr.shape}); expected an array of numbers")
    if arr.dtype.kind in "fc":
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.unravel_index(np.argmax(bad), arr.shape))
            raise DataError(
                f"{where}: {label} holds {int(bad.sum())} NaN or infinite values, "
                f"the first in row {first[0]} "
                f"(index {first}, value {arr[first]}); expected finite numbers"
            )
    return arr


def read_array(path: Path, key: str | None, where: str, pm=None) -> np.ndarray:
    """One array from a file; errors name ``where`` (the YAML path), the file and the key.

    The file is read by a loader plugin's :meth:`~ptyrad_core.plugin.Loader.read_array` (the
    same code that reads measurements: ``.npy`` / ``.npz``, HDF5, MATLAB ``.mat``), picked from
    the loader registry of ``pm`` (default: ptyrad-core's own plugins) by the file's suffix
    (:attr:`~ptyrad_core.plugin.Loader.array_suffixes`), else by ``ptyrad_sniff_loader``; a file
    no loader reads is read as text (``np.loadtxt``, one row per line). The array is checked with
    :func:`check_array` (numbers, non-empty, no NaN or Inf).
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{where}: {str(path)!r} is a directory; expected an array file")
    if not path.is_file():
        raise DataError(f"{where}: file {str(path)!r} does not exist")
    try:
        loader = array_loader(path, pm)
        arr, key = loader.read_array(path, key) if loader is not None else (np.loadtxt(path, ndmin=2), None)
    except DataError as exc:
        if str(exc).startswith(f"{where}:"):
            raise
        raise DataError(f"{where}: {exc}") from exc
    except Exception as exc:
        raise DataError(f"{where}: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    return check_array(arr, f"{path}:{key}" if key is not None else str(path), where)


def array_loader(path: Path, pm=None) -> type | None:
    """The loader class that reads initial arrays from ``path``: of ``pm``'s loaders (then of
    ptyrad-core's own, which a config may have disabled), the first whose ``array_suffixes``
    hold the file's suffix, else the one ``ptyrad_sniff_loader`` names if it reads arrays."""
    suffix = path.suffix.lower()
    for manager in ((pm,) if pm is not None else ()) + (_own_plugins(),):
        registry = manager.registry("loader")
        for entry in registry.entries():
            if suffix in entry.cls.array_suffixes:
                return entry.cls
        name = manager.hook.ptyrad_sniff_loader(path=path)
        if name in registry and registry.get(name).cls.array_suffixes:
            return registry.get(name).cls
    return None


@functools.cache
def _own_plugins():
    """ptyrad-core's own plugins (no third-party entry points), built once per process."""
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager

    return get_plugin_manager(autoload=False)


def read_prior(spec, where: str, pm, config, cache: dict, resolved=None) -> PriorResult:
    """The previous reconstruction named by ``spec`` (path, reader), read once per file.

    ``resolved``: the (registry entry, options) of its reader, resolved with the config; without
    it the reader is resolved here, by the same :meth:`Registry.resolve`.
    """
    path = config.resolve(spec.path)
    if not path.is_file():
        raise DataError(f"{where}.path: result file {str(path)!r} does not exist")
    registry = pm.registry("result_reader")
    if resolved is None:
        resolved = registry.resolve(
            spec.reader,
            spec.reader_options,
            tuple(where.split(".")),
            origin=config.origin,
            name_key="reader",
            field="reader_options",
            sniff=pm.hook.ptyrad_sniff_result,
            path=path,
        )
        if resolved is None:
            raise DataError(
                f"{where}.reader: no result reader recognises {str(path)!r}; "
                f"name one of: {', '.join(registry.names())}"
            )
    entry, options = resolved
    name = entry.name
    key = (str(path), name, repr(sorted(spec.reader_options.items())))
    if key not in cache:
        reader = entry.cls(path, options)
        try:
            cache[key] = reader.read()
        except (DataError, ConfigError, PluginError):
            raise
        except Exception as exc:
            raise DataError(
                f"{where}: result reader {name!r} (plugin {entry.plugin!r}) failed on {path}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return cache[key]


def need(prior: PriorResult, field: str, where: str) -> np.ndarray:
    value = getattr(prior, field)
    if value is None:
        raise DataError(f"{where}: the result file {prior.source} holds no {field.replace('_', ' ')}")
    return check_array(value, f"{prior.source} ({field.replace('_', ' ')})", where)


# --------------------------------------------------------------------------------------------
# object depth operations (complex objects (omode, Nz, NY, NX))
# --------------------------------------------------------------------------------------------


def z_crop(obj: np.ndarray, start: int, stop: int) -> np.ndarray:
    out = obj[:, start:stop]
    if out.shape[1] == 0:
        raise ConfigError(
            f"model.object.z_crop [{start}, {stop}) keeps no slice of the {obj.shape[1]} loaded"
        )
    return out


def z_pad(obj: np.ndarray, layers: tuple[int, int], kinds: tuple[str, str]) -> np.ndarray:
    """Add slices before / after: vacuum (transmission 1) or copies of the edge slice."""
    parts = []
    for n, kind, edge in ((layers[0], kinds[0], obj[:, :1]), (layers[1], kinds[1], obj[:, -1:])):
        block = np.ones_like(edge) if kind == "vacuum" else edge
        parts.append(np.repeat(block, n, axis=1))
    return np.concatenate([parts[0], obj, parts[1]], axis=1)


def z_resample(obj: np.ndarray, dz: float, mode: str, value: float) -> tuple[np.ndarray, float]:
    """Resample along depth keeping the phase sum, the amplitude product and the thickness.

    Area-weighted (box) resampling of ``phase`` and ``log(amplitude)``, both scaled by the ratio
    of slice thicknesses (as PtyRAD's ``obj_z_resample``). Returns the object and the new dz.
    """
    nz = obj.shape[1]
    total = nz * dz
    if mode == "scale_slices":
        new = nz * value
    elif mode == "scale_thickness":
        new = nz / value
    elif mode == "target_slices":
        new = value
    else:  # target_thickness
        new = total / value
    n_new = int(round(new))
    if n_new < 1:
        raise ConfigError(f"model.object.z_resample gives {new:.3f} slices")
    edges_old = np.arange(nz + 1) / nz
    edges_new = np.arange(n_new + 1) / n_new
    # overlap matrix W[j, i] = fraction of old slice i inside new slice j
    lo = np.maximum(edges_new[:-1, None], edges_old[None, :-1])
    hi = np.minimum(edges_new[1:, None], edges_old[None, 1:])
    w = np.clip(hi - lo, 0, None) * nz  # weights: each new slice collects nz/n_new old slices' worth
    amp = np.log(np.abs(obj))
    phase = np.angle(obj)
    new_amp = np.einsum("ji,mi...->mj...", w, amp)
    new_phase = np.einsum("ji,mi...->mj...", w, phase)
    return np.exp(new_amp + 1j * new_phase), total / n_new


def set_object_modes(obj: np.ndarray, modes: int) -> np.ndarray:
    """Keep the first ``modes`` object modes, or add copies of the first one."""
    if obj.shape[0] >= modes:
        return obj[:modes]
    return np.concatenate([obj, np.repeat(obj[:1], modes - obj.shape[0], axis=0)], axis=0)


def probe_with_modes(probe: np.ndarray, modes: int, mode_power: float) -> np.ndarray:
    """Cap a loaded probe at ``modes`` or add Hermite-like modes of ``mode_power``; intensity kept.

    Follows PtyRAD's ``_probe_set_pmode_max``: new modes come from the strongest mode, the
    total intensity is restored, and the modes are orthogonalised and sorted.
    """
    from ptyrad_core.setup.optics import make_mixed_probe, orthogonalize_modes

    total = float(np.sum(np.abs(probe) ** 2))
    if probe.shape[0] >= modes:
        out = probe[:modes]
    else:
        extra = modes - probe.shape[0]
        power = min(mode_power) if isinstance(mode_power, (list, tuple)) else mode_power
        new = make_mixed_probe(probe[0] / math.sqrt(total), extra + 1, power)[1:] * math.sqrt(total)
        out = np.concatenate([probe, new])
    out = out * math.sqrt(total / np.sum(np.abs(out) ** 2))
    return orthogonalize_modes(out)
