"""RosettaSciIO loader: 4D-STEM data in the formats RosettaSciIO reads.

RosettaSciIO (``rsciio``, the file I/O library of HyperSpy) reads, among others, Gatan
DigitalMicrograph ``.dm3`` / ``.dm4``, Quantum Detectors Merlin ``.mib``, HyperSpy ``.hspy``,
EMD (NCEM / Velox / DE) ``.emd``, NanoMegas ``.blo`` / ``.app5``, TVIPS ``.tvips`` and FEI TIA
``.ser``. This loader asks RosettaSciIO's reader for the file's signals and hands one of them to
ptyrad_core as it is:

- a 4-D signal ``(Ny, Nx, ky, kx)`` (scan rows, scan columns, detector rows, detector columns:
  RosettaSciIO's order, navigation axes first, signal axes last) or a 3-D stack ``(N, ky, kx)``;
  anything else is refused with the shapes the file holds;
- the reader is chosen from the file extension (``format`` names it where an extension is
  shared, e.g. ``.mrc`` or ``.hdf5``); ``signal`` picks one of several signals (a Velox file
  holds images and spectra next to the 4D-STEM data), by default the only 3-D / 4-D one;
- ``reader_options`` are keyword arguments of the reader; YAML lists in them are passed as
  tuples (``navigation_shape: [4, 2]`` for a Merlin ``.mib`` file);
- ``lazy: true`` (default) reads through dask: the kernel reads the array whole when it fits
  ``data.memory_budget_MB``, otherwise every batch reads only its own patterns;
- the axes calibrations (name, size, scale, offset, units) and the beam energy and convergence
  angle found in the metadata go into ``Measurements.metadata`` for information; the config's
  ``experiment`` section stays the calibration the reconstruction uses.

With ``data.loader: auto``, files ending in one of :data:`SNIFFED_SUFFIXES` are given to this
loader before the built-in loaders are asked (``tryfirst``): ``.hspy`` and ``.app5`` files are
HDF5 files that the generic ``hdf5`` loader would otherwise claim. ``.emd``, ``.h5`` and
``.mrc`` are left to the built-in loaders; name ``loader: rsciio`` for those.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from ptyrad_core.plugin import DataError, Field, Loader, Measurements, PluginOptions, hookimpl

#: extensions that ``data.loader: auto`` sends to this loader (formats that hold 4D-STEM data and
#: that no built-in loader reads)
SNIFFED_SUFFIXES = {".dm3", ".dm4", ".mib", ".hspy", ".blo", ".app5", ".tvips", ".ser"}


def _plugins() -> list[dict]:
    from rsciio import IO_PLUGINS

    return IO_PLUGINS


def reader_for(path: Path, format: str | None = None) -> dict:
    """The RosettaSciIO plugin description (``name``, ``api``, ``file_extensions``) that reads ``path``."""
    plugins = _plugins()
    if format is not None:
        for p in plugins:
            if p["name"].lower() == format.lower():
                return p
        names = ", ".join(sorted(p["name"] for p in plugins))
        raise DataError(f"data.options.format: RosettaSciIO has no format {format!r}; its formats: {names}")
    suffix = path.suffix.lower().lstrip(".")
    found = [p for p in plugins if suffix in {e.lower() for e in p["file_extensions"]}]
    if not found:
        raise DataError(
            f"{path}: RosettaSciIO reads no '.{suffix}' files; set data.options.format to one of its formats "
            f"({', '.join(sorted(p['name'] for p in plugins))}) or use another loader"
        )
    if len(found) > 1:
        raise DataError(
            f"{path}: '.{suffix}' files are read by several RosettaSciIO formats "
            f"({', '.join(p['name'] for p in found)}); "
            "set data.options.format to one of them"
        )
    return found[0]


def as_tuples(value):
    """YAML lists as tuples, at any depth (in mappings and in lists of lists).

    YAML has no tuple: ``navigation_shape: [4, 2]`` arrives as a list, but RosettaSciIO's readers
    test for tuples (the Merlin reader refuses a list: "`navigation_shape` must be `None` or of
    tuple type"). No reader option of RosettaSciIO needs a list that a tuple would not do for.
    """
    if isinstance(value, (list, tuple)):
        return tuple(as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: as_tuples(v) for k, v in value.items()}
    return value


class _FileCloser:
    """Closes the HDF5 file behind a lazy (dask) array, where RosettaSciIO keeps one open."""

    def __init__(self, data):
        self.data = data

    def close(self) -> None:
        try:
            from rsciio.utils.file import get_file_handle

            handle = get_file_handle(self.data, warn=False)
        except Exception:
            return
        if handle is not None:
            try:
                handle.close()
            except Exception:
                pass


def _plain(value):
    """Metadata values as plain Python (numpy scalars become numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _metadata(signal: dict, reader: dict) -> dict[str, Any]:
    import rsciio

    md = signal.get("metadata") or {}
    out: dict[str, Any] = {
        "reader": f"rosettasciio {getattr(rsciio, '__version__', '?')} {reader['name']}",
        "title": _plain((md.get("General") or {}).get("title", "")),
        "axes": [
            {k: _plain(a.get(k)) for k in ("name", "size", "scale", "offset", "units", "navigate") if k in a}
            for a in signal.get("axes", [])
        ],
    }
    tem = (md.get("Acquisition_instrument") or {}).get("TEM") or {}
    for key, name in (
        ("beam_energy", "energy_kV"),
        ("convergence_angle", "conv_angle_mrad"),
        ("camera_length", "camera_length"),
    ):
        if key in tem:
            out[name] = _plain(tem[key])
    return out


class RsciioLoader(Loader):
    """Any 4D-STEM file that RosettaSciIO reads (dm3/dm4, mib, hspy, emd, blo, app5, tvips, ser, ...)."""

    class Options(PluginOptions):
        format: str | None = Field(
            None,
            description="RosettaSciIO format name (e.g. 'HSPY', 'EMD', 'DigitalMicrograph', "
            "'QuantumDetector'); null: from the file extension.",
        )
        signal: int | None = Field(
            None,
            ge=0,
            description="Index of the signal to use when the file holds several; "
            "null: the only 3-D / 4-D one.",
        )
        lazy: bool = Field(
            True,
            description="Read through dask, so that data larger than data.memory_budget_MB "
            "are streamed per batch.",
        )
        reader_options: dict[str, Any] = Field(
            default_factory=dict,
            description="Extra keyword arguments of the RosettaSciIO reader "
            "(e.g. navigation_shape for .mib).",
        )

    def load(self) -> Measurements:
        path, o = self.path, self.options
        if not path.exists():
            raise DataError(f"data.path: measurement file {str(path)!r} does not exist")
        reader = reader_for(path, o.format)
        try:
            module = importlib.import_module(reader["api"])
        except ImportError as exc:
            raise DataError(
                f"{path}: RosettaSciIO's {reader['name']} reader needs a package that is not installed "
                f"({exc}); "
                f"see RosettaSciIO's installation notes for the {reader['name']} format"
            ) from None
        kwargs = {k: as_tuples(v) for k, v in o.reader_options.items()}
        params = inspect.signature(module.file_reader).parameters
        if "lazy" in params:
            kwargs.setdefault("lazy", o.lazy)
        unknown = [
            k for k in kwargs if k not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values())
        ]
        if unknown:
            raise DataError(
                f"data.options.reader_options: RosettaSciIO's {reader['name']} reader takes no "
                f"{', '.join(map(repr, unknown))}; "
                f"it takes: {', '.join(k for k in params if k != 'filename')}"
            )
        try:
            signals = module.file_reader(str(path), **kwargs)
        except TypeError as exc:
            if not o.reader_options:
                raise DataError(
                    f"{path}: RosettaSciIO's {reader['name']} reader could not read it (TypeError: {exc})"
                ) from None
            raise DataError(
                f"data.options.reader_options: RosettaSciIO's {reader['name']} reader rejected "
                f"{o.reader_options} ({exc})"
            ) from None
        except Exception as exc:
            raise DataError(
                f"{path}: RosettaSciIO's {reader['name']} reader could not read it "
                f"({type(exc).__name__}: {exc})"
            ) from None
        index = self._pick(signals, reader)
        signal = signals[index]
        data = signal["data"]
        shape = tuple(int(s) for s in data.shape)
        source = f"{path}" if len(signals) == 1 else f"{path}:signal {index}"
        if 0 in shape:
            raise DataError(f"{source}: the signal is empty (shape {shape})")
        dtype = np.dtype(data.dtype)
        if (
            dtype.names is not None
            or not np.issubdtype(dtype, np.number)
            or np.issubdtype(dtype, np.complexfloating)
        ):
            raise DataError(f"{source}: expected real intensities, got dtype {dtype}")
        resources = [_FileCloser(data)] if type(data).__module__.startswith("dask") else []
        return Measurements(data, source=source, metadata=_metadata(signal, reader), resources=resources)

    def _pick(self, signals: list[dict], reader: dict) -> int:
        """The index of the signal to use."""
        path = self.path
        shapes = [tuple(int(s) for s in sig["data"].shape) for sig in signals]
        listed = (
            ", ".join(
                f"{i}: "
                f"{(sig.get('metadata') or {}).get('General', {}).get('title', '') or 'untitled'} {shape}"
                for i, (sig, shape) in enumerate(zip(signals, shapes))
            )
            or "none"
        )
        expected = "expected a 4-D (scan y, scan x, ky, kx) or 3-D (N, ky, kx) stack of diffraction patterns"
        if self.options.signal is not None:
            i = self.options.signal
            if i >= len(signals):
                raise DataError(
                    f"data.options.signal: {path} holds {len(signals)} signal(s) ({listed}); "
                    f"index {i} is out of range"
                )
            if len(shapes[i]) not in (3, 4):
                raise DataError(f"{path}: signal {i} has shape {shapes[i]} ({len(shapes[i])}-D); {expected}")
            return i
        found = [i for i, s in enumerate(shapes) if len(s) in (3, 4)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise DataError(
                f"{path}: wrong dimensionality: RosettaSciIO's {reader['name']} reader found {listed}; "
                f"{expected}"
            )
        raise DataError(
            f"{path}: holds several 3-D / 4-D signals ({listed}); set data.options.signal to one index"
        )


@hookimpl
def ptyrad_register_loaders(registry):
    registry.add("rsciio", RsciioLoader)


@hookimpl(tryfirst=True)
def ptyrad_sniff_loader(path):
    # tryfirst: .hspy / .app5 files are HDF5 files, which the generic hdf5 loader would claim
    path = Path(path)
    if path.suffix.lower() in SNIFFED_SUFFIXES and path.exists():
        return "rsciio"
    return None
