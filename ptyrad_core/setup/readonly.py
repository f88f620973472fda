"""Inputs are read-only: the files a command reads, and how a command recognises its own outputs.

No command writes to a file it reads. Every command that writes a file checks the target with
:func:`ptyrad_core.engine.outputs.check_new_file` before the work, passing

- ``inputs``: every file the command reads. For a reconstruction config that is
  :func:`config_inputs`: the config file itself, the measurement file, the scan / probe / object /
  tilt files it names, local plugin modules and any option of the loader or of a component that
  names an existing file. Such a target is refused even with ``--overwrite``.
- ``is_previous_output``: how the command recognises a file it wrote before, which it may
  replace without ``--overwrite``. Each kind of file carries a mark the command reads back:

  ============================ ===========================================================
  file                         mark
  ============================ ===========================================================
  HDF5 (``export``)            root attribute ``ptyrad_core_output`` naming the kind
                               (:data:`HDF5_MARK`, :func:`hdf5_marked`)
  HDF5 (``simulate``)          the ``simulator`` attribute of ``ptyrad_core.apps.simulate``
  TIFF (``export``)            the TIFF *Software* tag (:func:`tiff_software`)
  PNG / PDF / SVG (``frc``)    the *Software* / *Creator* metadata (:func:`plot_metadata`,
                               :func:`has_marker`)
  YAML (``convert``)           the first line, ``# ptyrad_core config translated from``
  HTML (``report``)            ``<meta name="generator" content="ptyrad_core report">``
  ``.npy`` (``export``)        none is possible (the header admits no extra keys): a ``.npy``
                               file counts as a previous export when its header holds
                               float32, C order and exactly the shape about to be written
                               (:func:`npy_matches`), i.e. the same export run again
  ============================ ===========================================================

``validate`` is a dry run: :func:`check_new_file_dry` applies the same rules without creating
a folder or a file, and reports what would be written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ptyrad_core.kernel.errors import OutputError

#: root attribute of an HDF5 file ptyrad_core wrote, naming what wrote it
HDF5_MARK = "ptyrad_core_output"


# -- what a reconstruction config reads -----------------------------------------------------


def _existing_files(value, base_dir: Path) -> list[Path]:
    """Strings anywhere inside ``value`` (dicts, lists) that name an existing file."""
    out: list[Path] = []
    if isinstance(value, dict):
        for v in value.values():
            out += _existing_files(v, base_dir)
    elif isinstance(value, (list, tuple)):
        for v in value:
            out += _existing_files(v, base_dir)
    elif isinstance(value, (str, Path)) and str(value) and len(str(value)) < 4096 and "\n" not in str(value):
        p = Path(value).expanduser()
        p = p if p.is_absolute() else base_dir / p
        try:
            if p.is_file():
                out.append(p.resolve())
        except OSError:
            pass
    return out


def named_config_inputs(config) -> list[tuple[str, Path]]:
    """``(key, path)`` of every file a reconstruction of ``config`` reads (resolved; the first key
    that names a path when several do): the config file, ``data.path``, the scan / probe / object
    / tilt files, local plugin modules, and any option of the loader or a component that names
    an existing file."""
    base = Path(config.origin.folder)
    found: list[tuple[str, Path]] = []
    if config.origin.file is not None and config.origin.file.is_file():
        found.append(("the config", config.origin.file))
    found.append(("data.path", config.resolve(config.data.path)))
    holders = {
        "scan": config.scan,
        "model.probe": config.model.probe,
        "model.object": config.model.object,
        "model.tilts": config.model.tilts,
    }
    for key, holder in holders.items():
        if getattr(holder, "path", None) is not None:
            found.append((f"{key}.path", config.resolve(holder.path)))
    for i, module in enumerate(config.plugins.modules):
        if module.endswith(".py"):
            found.append((f"plugins.modules[{i}]", config.resolve(Path(module))))
    found += [("data.options", p) for p in _existing_files(config.data.options, base)]
    for key, holder in holders.items():
        found += [
            (f"{key}.reader_options", p) for p in _existing_files(getattr(holder, "reader_options", {}), base)
        ]
    for family in ("loss", "constraints", "forward", "detector"):
        for i, spec in enumerate(getattr(config, family)):
            found += [(f"{family}[{i}] {spec.name!r}", p) for p in _existing_files(spec.options, base)]
    for i, spec in enumerate(config.data.preprocess):
        if spec.name == "export":  # the export's own target is its output, not an input
            continue
        found += [(f"data.preprocess[{i}] {spec.name!r}", p) for p in _existing_files(spec.options, base)]
    unique: list[tuple[str, Path]] = []
    for key, p in found:
        if p not in [q for _, q in unique]:
            unique.append((key, p))
    return unique


def config_inputs(config) -> list[Path]:
    """Every file a reconstruction of ``config`` reads (resolved; those that exist or are named)."""
    return [p for _, p in named_config_inputs(config)]


def input_key(path: Path | str, named: Iterable[tuple[str, Path]]) -> str | None:
    """The key of ``named`` (:func:`named_config_inputs`) whose file is ``path``, or ``None``."""
    for key, source in named:
        if same_file(path, source):
            return key
    return None


# -- the dry-run rule -----------------------------------------------------------------------


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name the same file (through links and relative parts)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def judge_new_file(
    path: Path | str,
    what: str,
    *,
    inputs: Iterable[Path | str] = (),
    overwrite: bool = False,
    is_previous_output: Callable[[Path], bool] | None = None,
    kind: str = "output",
) -> str:
    """The rule for writing one file, judged without touching anything.

    - ``path`` is one of ``inputs`` (the files the command reads): refused, even with
      ``--overwrite`` (no command writes to a file it reads).
    - ``path`` is a folder: refused.
    - ``path`` exists and ``is_previous_output(path)`` says it is a previous output of the same
      kind, or ``overwrite``: it may be replaced. Any other existing file is refused.

    :param what: the option or key that names the path (``-o``, ``data.preprocess[1] 'export'``).
    :param kind: what the file is, for the message (``native config``, ``simulated dataset``).
    :return: ``"replace"`` or ``"new"``.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and same_file(path, source):
            raise OutputError(
                f"{what}: {str(path)!r} is a file this command reads; it is never written to. "
                "Choose another path"
            )
    if path.is_dir():
        raise OutputError(f"{what}: {str(path)!r} is a folder, not a file")
    if not path.exists():
        return "new"
    if overwrite:
        return "replace"
    previous = False
    if is_previous_output is not None:
        try:
            previous = bool(is_previous_output(path))
        except Exception:  # unreadable: certainly not ours
            previous = False
    if not previous:
        raise OutputError(
            f"{what}: {str(path)!r} exists and is not a previous {kind}; pass --overwrite to replace it "
            "or choose another path"
        )
    return "replace"


def check_new_file_dry(
    path: Path | str,
    what: str,
    *,
    inputs: Iterable[Path | str] = (),
    overwrite: bool = False,
    is_previous_output: Callable[[Path], bool] | None = None,
    kind: str = "output",
) -> str:
    """:func:`ptyrad_core.engine.outputs.check_new_file` without creating anything (for ``validate``).

    :return: ``"new"``, ``"replace"`` (a previous output, or ``overwrite``) or ``"new folder"``.
    :raises OutputError: the same one-line errors, and for a folder that could not be created or
        written (judged from the nearest existing folder's permissions).
    """
    path = Path(path)
    state = judge_new_file(
        path, what, inputs=inputs, overwrite=overwrite, is_previous_output=is_previous_output, kind=kind
    )
    if state == "replace":
        return state
    folder = path.parent if str(path.parent) else Path(".")
    for parent in (folder, *folder.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"{what}: {str(parent)!r} is a file, not a folder; choose another {what}")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"{what}: the folder {str(parent)!r} is not writable")
            return "new" if parent == folder else "new folder"
    return "new folder"


# -- recognising previous outputs -----------------------------------------------------------


def hdf5_marked(path: Path | str, kind: str) -> bool:
    """Whether ``path`` is an HDF5 file whose root attribute :data:`HDF5_MARK` is ``kind``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get(HDF5_MARK)
    except (OSError, ValueError):
        return False
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value == kind


def has_marker(path: Path | str, marker: bytes, window: int = 1 << 16) -> bool:
    """Whether ``marker`` occurs in the first or last ``window`` bytes of the file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(window)
            if marker in head:
                return True
            size = fh.seek(0, os.SEEK_END)
            if size <= window:
                return False
            fh.seek(max(window - len(marker), size - window))
            return marker in fh.read()
    except OSError:
        return False


def starts_with(path: Path | str, prefix: str | bytes) -> bool:
    """Whether the file ``path`` begins with ``prefix`` (text: UTF-8)."""
    data = prefix.encode("utf-8") if isinstance(prefix, str) else prefix
    try:
        with open(path, "rb") as fh:
            return fh.read(len(data)) == data
    except OSError:
        return False


def tiff_software(path: Path | str) -> str | None:
    """The TIFF *Software* tag of the first page, or ``None`` (not a TIFF, or tifffile missing)."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].software or None
    except Exception:  # not a TIFF
        return None


def npy_matches(path: Path | str, shape: tuple[int, ...], dtype: str = "<f4") -> bool:
    """Whether ``path`` is a ``.npy`` file of ``dtype``, C order and exactly ``shape``."""
    import numpy as np

    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            header = read(fh)  # (shape, fortran_order, dtype)
    except Exception:
        return False
    got_shape, fortran, got_dtype = header
    return tuple(got_shape) == tuple(shape) and not fortran and got_dtype == np.dtype(dtype)


def plot_metadata(path: Path | str, text: str) -> dict:
    """``savefig(metadata=...)`` that marks a plot as written by ``text`` (png, pdf, svg, eps)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("", "png"):
        return {"Software": text}
    if suffix in ("pdf", "svg", "eps", "ps"):
        return {"Creator": text}
    return {}
