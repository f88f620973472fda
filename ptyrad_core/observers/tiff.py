"""TIFF exports of a result, like PtyRAD's ``save_result`` / ``result_modes``.

``output.tiff`` selects what is written next to ``result.h5`` at every save (file names end in
``_iterNNNN``):

- ``parts``: ``phase``, ``amplitude``, ``probe`` (amplitudes of the modes side by side);
- ``obj_dim``: 2 = the projection (phase summed, amplitude multiplied over slices; modes
  averaged with their occupancies), 3 = the slices (``zstack``), 4 = every mode and slice;
- ``fov``: ``crop`` (the box spanned by the probe centres, :func:`ptyrad_core.setup.scan.scanned_region`)
  and / or ``full``;
- ``bit``: ``raw`` (float32 values as they are), ``32`` (float32 scaled to 0..1), ``16`` and ``8``
  (scaled to the full unsigned range).

Needs the ``tifffile`` package (``pip install tifffile``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ptyrad_core.kernel.errors import ConfigError
from ptyrad_core.kernel.hookspecs import hookimpl
from ptyrad_core.setup.scan import scanned_region

log = logging.getLogger("ptyrad_core")

#: the name this observer is registered under (and disabled by)
PLUGIN_NAME = "core.tiff"
BIT_SUFFIX = {"raw": "", "32": "_32bit", "16": "_16bit", "8": "_08bit"}


def scale_to_bits(arr: np.ndarray, bit: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if bit == "raw":
        return arr.astype(np.float32)
    span = np.ptp(arr)
    unit = (arr - arr.min()) / span if span > 0 else np.zeros_like(arr)
    if bit == "32":
        return unit.astype(np.float32)
    if bit == "16":
        return np.round(unit * 65535).astype(np.uint16)
    return np.round(unit * 255).astype(np.uint8)


def _object_views(phase: np.ndarray, amplitude: np.ndarray, occ: np.ndarray, dims) -> dict[str, np.ndarray]:
    """``{file stem: array}`` for the requested object dimensionalities."""
    w = occ[:, None, None, None] / occ.sum()
    views = {}
    if 2 in dims:
        views["objp_zsum"] = (w * phase).sum(0).sum(0)
        views["obja_zprod"] = np.exp((w * np.log(np.clip(amplitude, 1e-12, None))).sum(0).sum(0))
    if 3 in dims:
        views["objp_zstack"] = (w * phase).sum(0)
        views["obja_zstack"] = (w * amplitude).sum(0)
    if 4 in dims:
        views["objp_4D"] = phase
        views["obja_4D"] = amplitude
    return views


def export_tiffs(result: dict, out_dir: Path, spec) -> list[Path]:
    """Write the TIFF files ``spec`` (an ``output.tiff`` section) asks for; return their paths."""
    try:
        import tifffile
    except ImportError:
        raise ConfigError("output.tiff needs the 'tifffile' package: pip install tifffile") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    iteration = int(result["attrs"]["iteration"])
    tag = f"_iter{iteration:04d}"
    phase, amplitude = result["object/phase"], result["object/amplitude"]
    probe = result["probe/modes"]
    region = scanned_region(result["positions/nominal_px"], probe.shape[-2:])
    written = []
    for bit in spec.bit:
        if "probe" in spec.parts:
            side_by_side = np.concatenate(list(np.abs(probe)), axis=-1)
            path = out_dir / f"probe_amp{BIT_SUFFIX[bit]}{tag}.tif"
            tifffile.imwrite(path, scale_to_bits(side_by_side, bit))
            written.append(path)
        for fov in spec.fov:
            window = (slice(None), slice(None), *region) if fov == "crop" else (slice(None),) * 4
            views = _object_views(phase[window], amplitude[window], result["object/occupancy"], spec.obj_dim)
            for stem, arr in views.items():
                if (
                    stem.startswith("objp")
                    and "phase" not in spec.parts
                    or stem.startswith("obja")
                    and "amplitude" not in spec.parts
                ):
                    continue
                path = out_dir / f"{stem}{'_crop' if fov == 'crop' else ''}{BIT_SUFFIX[bit]}{tag}.tif"
                tifffile.imwrite(path, scale_to_bits(arr, bit))
                written.append(path)
    return written


class TiffObserver:
    """Writes the ``output.tiff`` exports at every save."""

    @hookimpl
    def ptyrad_on_run_start(self, run):
        if run.config.output.tiff is not None:
            try:
                import tifffile  # noqa: F401
            except ImportError:
                raise ConfigError("output.tiff needs the 'tifffile' package: pip install tifffile") from None

    @hookimpl
    def ptyrad_on_save(self, run, path, iteration):
        spec = run.config.output.tiff
        if spec is None:
            return
        from ptyrad_core.engine.results import read_result

        files = export_tiffs(read_result(path), Path(path).parent, spec)
        log.info("wrote %d TIFF files at iteration %d", len(files), iteration)


def make_plugin() -> TiffObserver:
    """A fresh observer for one plugin manager."""
    return TiffObserver()
