"""TIFF exports of a result (PtyRAD's result_modes)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_run

from ptyrad_core.apps.metrics import scanned_region
from ptyrad_core.engine.results import read_result
from ptyrad_core.observers.tiff import scale_to_bits

tifffile = pytest.importorskip("tifffile", reason="the TIFF exports need tifffile (the 'formats' extra)")


def test_tiff_exports_of_a_run(tiny_config):
    cfg = tiny_config(
        model={
            "probe": {"modes": 2},
            "object": {"modes": 2, "phase_noise": 0.01, "slices": 2, "slice_thickness_A": 3.9},
        }
    )
    cfg["output"]["tiff"] = {
        "parts": ["phase", "amplitude", "probe"],
        "obj_dim": [2, 3, 4],
        "fov": ["crop", "full"],
        "bit": ["raw", "8"],
    }
    run = build_run(cfg).run()
    r = read_result(run.result_path)
    out = run.output_dir
    occ = r["object/occupancy"] / r["object/occupancy"].sum()
    region = scanned_region(r["positions/nominal_px"], (64, 64))
    zsum = np.tensordot(occ, r["object/phase"].sum(1), axes=1)
    assert np.allclose(tifffile.imread(out / "objp_zsum_iter0002.tif"), zsum, atol=1e-5)
    assert np.allclose(tifffile.imread(out / "objp_zsum_crop_iter0002.tif"), zsum[region], atol=1e-5)
    assert tifffile.imread(out / "objp_4D_iter0002.tif").shape == (2, 2, 80, 80)
    eight = tifffile.imread(out / "obja_zprod_crop_08bit_iter0002.tif")
    assert eight.dtype == np.uint8 and eight.min() == 0 and eight.max() == 255
    probe = tifffile.imread(out / "probe_amp_iter0002.tif")
    assert probe.shape == (64, 128) and np.allclose(probe[:, :64], np.abs(r["probe/modes"][0]), atol=1e-6)


def test_bit_depth_scaling():
    a = np.array([[-1.0, 0.0], [1.0, 3.0]])
    assert np.array_equal(scale_to_bits(a, "8"), np.array([[0, 64], [128, 255]], dtype=np.uint8))
    assert scale_to_bits(a, "16").max() == 65535 and scale_to_bits(a, "32").max() == 1.0
    assert np.array_equal(scale_to_bits(a, "raw"), a.astype(np.float32))
