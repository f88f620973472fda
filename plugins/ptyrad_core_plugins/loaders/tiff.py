"""TIFF loader: a stack of diffraction patterns in a ``.tif`` / ``.tiff`` file.

The file's image series is used as ``tifffile.imread`` gives it: a stack of ``N`` frames (pages)
of ``ky x kx`` pixels becomes ``(N, ky, kx)``; a 4-D series (``tifffile.imwrite`` of a
``(Ny, Nx, ky, kx)`` array, an ImageJ hyperstack) keeps its 4 axes. A file whose pages
``tifffile`` sees as separate 2-D series of one shape (pages written one by one) is stacked in
page order. A single 2-D image is refused (one pattern is not a scan). Needs the ``tifffile``
package (``pip install tifffile``).

Uncompressed files written contiguously (``tifffile.imwrite`` of a whole array, most
ImageJ stacks) are memory-mapped (``tifffile.memmap``), not read: the kernel reads them whole
if they fit ``data.memory_budget_MB``, else each batch reads only its own patterns. Compressed
or scattered files can only be read whole: the kernel does so when they fit the budget (and
refuses otherwise), not the loader. A file shorter than the image data its headers point to is
refused before anything is read.

No options.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ptyrad_core.plugin import DataError, Loader, Measurements, PluginOptions, hookimpl

from ._files import WholeArray, check_dtype, check_extent, check_shape, require

SUFFIXES = {".tif", ".tiff"}
MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class TiffLoader(Loader):
    """A TIFF stack, memory-mapped when the file allows it."""

    class Options(PluginOptions):
        pass

    def load(self) -> Measurements:
        tifffile = require("tifffile", "reading TIFF files")
        path, source = self.path, str(self.path)
        damage = _Errors()  # tifffile logs what it skips (pages beyond the end of a truncated file)
        logger = logging.getLogger("tifffile")
        logger.addFilter(damage)
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series
                shapes = [tuple(s.shape) for s in series]
                dtypes = [s.dtype for s in series]
                n_pages = len(tif.pages)
                data_end = _data_end(tif, series)
        except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
            raise DataError(f"{path}: not a readable TIFF file ({type(exc).__name__}: {exc})") from None
        finally:
            logger.removeFilter(damage)
        check_extent(source, path, data_end, "the image data its headers point to")
        if damage.messages:
            raise DataError(
                f"{path}: the TIFF file ({path.stat().st_size} bytes) is damaged or truncated: "
                f"{damage.messages[0]}"
                f"{f' (and {len(damage.messages) - 1} more problems)' if len(damage.messages) > 1 else ''}; "
                "expected a complete file"
            )
        if not series:
            raise DataError(f"{path}: not a readable TIFF file: it holds no images")
        if len(series) == 1:
            shape, dtype = shapes[0], dtypes[0]
        elif (
            all(len(s) == 2 and s == shapes[0] for s in shapes)
            and len(set(dtypes)) == 1
            and n_pages == len(series)
        ):
            shape, dtype = (len(series), *shapes[0]), dtypes[0]  # one page per series: a stack of frames
        else:
            listed = ", ".join(f"series {i} {s}" for i, s in enumerate(shapes[:20]))
            raise DataError(
                f"{path}: the TIFF file holds {len(series)} image series of different shapes ({listed}); "
                "expected one stack"
            )
        check_shape(source, shape)
        check_dtype(source, shape, dtype)
        try:
            if len(series) == 1:
                try:
                    array = tifffile.memmap(path, mode="r")
                except (
                    ValueError
                ):  # compressed, tiled or not contiguous: read whole, when the kernel decides to
                    array = WholeArray(shape, dtype, lambda: tifffile.imread(path), source)
            else:
                array = WholeArray(shape, dtype, lambda: tifffile.imread(path, key=slice(None)), source)
        except Exception as exc:
            raise DataError(
                f"{path}: could not read the TIFF image data of shape {shape} ({type(exc).__name__}: {exc})"
            ) from None
        if tuple(array.shape) != shape:
            raise DataError(
                f"{path}: read an array of shape {tuple(array.shape)}, "
                f"expected {shape} from the TIFF metadata"
            )
        return Measurements(array, source=source)


class _Errors(logging.Filter):
    """Holds back the errors tifffile logs while it reads the headers, and keeps their text."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record) -> bool:
        if record.levelno >= logging.ERROR:
            self.messages.append(record.getMessage().replace("\n", " "))
            return False
        return True


def _data_end(tif, series) -> int:
    """The byte just after the last image data the file's headers point to (strips or tiles of
    every page, or a series' contiguous block): the file must be at least this long."""
    end = 0
    for s in series:
        offset = getattr(s, "dataoffset", None)
        if offset is not None:
            end = max(end, int(offset) + int(s.nbytes))
            continue
        for page in s.pages:
            for o, n in zip(
                getattr(page, "dataoffsets", ()) or (), getattr(page, "databytecounts", ()) or ()
            ):
                end = max(end, int(o) + int(n))
    return end


@hookimpl
def ptyrad_register_loaders(registry):
    registry.add("tiff", TiffLoader)


@hookimpl
def ptyrad_sniff_loader(path):
    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix.lower() in SUFFIXES:
        return "tiff"
    try:
        with open(path, "rb") as f:
            if f.read(4) in MAGICS:
                return "tiff"
    except OSError:
        pass
    return None
