"""Guarantee 9, degenerate data and absurd values are named errors.

Every case runs ``ptyrad-core validate`` (or ``show`` / ``report``) in this process on a damaged
copy of the shipped data or a config with one bad value, and checks what docs/reliability.md
promises: exit status 2, no traceback, one message naming the file / key / array (and the row,
byte offset or chunk where that applies), and every input byte-for-byte unchanged.

- data: all-zero patterns, patterns without a bright-field disk (noise, dark frames), NaN / Inf in
  the arrays read from files (positions, tilts, probe, object: ``sources.read_array``), a
  damaged gzip chunk of the measurements (read whole and streamed);
- config values: NaN / Inf anywhere (``.nan`` / ``.inf`` in YAML or ``--set``), zero or negative
  calibrations, a calibration that makes the bright-field disk sub-pixel, a negative seed;
- config files: not UTF-8 (Latin-1, UTF-16, binary), control characters, empty, not a mapping, a
  directory;
- result files for ``show`` / ``report``: hostile YAML tags in the ``config`` attribute, bad JSON,
  a newer format version, not HDF5, truncated, a dataset missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "data" / "tiny.h5"
N = 64  # patterns in tiny.h5 (8 x 8 scan, 64 x 64 px)


def tiny_patterns() -> np.ndarray:
    with h5py.File(TINY, "r") as f:
        return f["measurements"][()]


def tiny_positions() -> np.ndarray:
    with h5py.File(TINY, "r") as f:
        return f["positions_nominal_px"][()]


def data_file(path: Path, patterns: np.ndarray) -> Path:
    """An HDF5 file laid out as tiny.h5 (gzip, chunked) holding ``patterns`` (8, 8, 64, 64)."""
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "measurements", data=patterns.astype(np.float32), chunks=(2, 2, 32, 32), compression="gzip"
        )
        f["positions_nominal_px"] = tiny_positions()
    return path


def config_with(tiny_config, write_yaml, data: Path | None = None, **sections) -> Path:
    cfg = tiny_config()
    if data is not None:
        cfg["data"]["path"] = str(data)
    for dotted, value in sections.items():
        node = cfg
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return write_yaml(cfg)


# --------------------------------------------------------------------------------------------
# degenerate patterns
# --------------------------------------------------------------------------------------------


def case_all_zero(tmp_path, tiny_config, write_yaml):
    data = data_file(tmp_path / "zeros.h5", np.zeros((8, 8, 64, 64)))
    return (
        ["validate", config_with(tiny_config, write_yaml, data)],
        [data],
        [str(data), "all 64 patterns are zero"],
    )


def noise(seed: int = 0) -> np.ndarray:
    """Patterns of Poisson noise (2 counts per pixel): what a blanked beam on a noisy detector records."""
    return np.random.default_rng(seed).poisson(2.0, size=(8, 8, 64, 64)).astype(np.float32)


def case_noise(tmp_path, tiny_config, write_yaml):
    data = data_file(tmp_path / "noise.h5", noise())
    return (
        ["validate", config_with(tiny_config, write_yaml, data)],
        [data],
        [str(data), "no bright-field disk", "experiment.dx_A"],
    )


def case_noise_fit_rbf(tmp_path, tiny_config, write_yaml):
    data = data_file(tmp_path / "noise.h5", noise())
    exp = {"energy_kV": 300, "conv_angle_mrad": 21.4, "fit_rbf": True}
    config = config_with(tiny_config, write_yaml, data, experiment=exp)
    return ["validate", config], [data], [str(data), "no bright-field disk", "experiment.fit_rbf"]


def case_dark_frames_hot_pixel_fit_rbf(tmp_path, tiny_config, write_yaml):
    dark = np.random.default_rng(1).poisson(0.01, size=(8, 8, 64, 64)).astype(np.float32)
    dark[..., 5, 7] = 4000.0  # one hot pixel: the half-maximum "disk" is a single pixel
    data = data_file(tmp_path / "dark.h5", dark)
    exp = {"energy_kV": 300, "conv_angle_mrad": 21.4, "fit_rbf": True}
    config = config_with(tiny_config, write_yaml, data, experiment=exp)
    return (
        ["validate", config],
        [data],
        [str(data), "no bright-field disk", "experiment.fit_rbf", "px radius"],
    )


# --------------------------------------------------------------------------------------------
# NaN / Inf in arrays read from files (sources.read_array)
# --------------------------------------------------------------------------------------------


def case_nan_positions_npy(tmp_path, tiny_config, write_yaml):
    pos = tiny_positions()
    pos[5, 1] = np.nan
    path = tmp_path / "positions.npy"
    np.save(path, pos)
    config = config_with(
        tiny_config, write_yaml, scan={"source": "file", "path": str(path), "n_slow": 8, "n_fast": 8}
    )
    return ["validate", config], [path], ["scan", str(path), "row 5", "(5, 1)", "NaN or infinite"]


def case_inf_positions_h5(tmp_path, tiny_config, write_yaml):
    pos = tiny_positions()
    pos[12, 0] = -np.inf
    path = tmp_path / "positions.h5"
    with h5py.File(path, "w") as f:
        f["scan/pos"] = pos
    scan = {"source": "file", "path": str(path), "key": "scan/pos", "n_slow": 8, "n_fast": 8}
    return (
        ["validate", config_with(tiny_config, write_yaml, scan=scan)],
        [path],
        [f"{path}:scan/pos", "row 12"],
    )


def case_nan_positions_text(tmp_path, tiny_config, write_yaml):
    path = tmp_path / "positions.txt"
    lines = [f"{y} {x}" for y, x in tiny_positions()]
    lines[40] = "nan 3.0"
    path.write_text("\n".join(lines) + "\n")
    config = config_with(
        tiny_config, write_yaml, scan={"source": "file", "path": str(path), "n_slow": 8, "n_fast": 8}
    )
    return ["validate", config], [path], [str(path), "row 40"]


def case_nan_tilts(tmp_path, tiny_config, write_yaml):
    tilts = np.zeros((N, 2))
    tilts[3, 0] = np.nan
    path = tmp_path / "tilts.npy"
    np.save(path, tilts)
    config = config_with(
        tiny_config, write_yaml, model__tilts={"source": "file", "path": str(path), "mode": "per_position"}
    )
    return ["validate", config], [path], ["model.tilts", str(path), "row 3"]


def case_nan_probe(tmp_path, tiny_config, write_yaml):
    with h5py.File(TINY, "r") as f:
        probe = f["ground_truth/probe"][()]
    probe[30, 31] = complex(np.nan, 0)
    path = tmp_path / "probe.npy"
    np.save(path, probe)
    config = config_with(tiny_config, write_yaml, model__probe={"source": "file", "path": str(path)})
    return ["validate", config], [path], ["model.probe", str(path), "row 30", "(30, 31)"]


def case_inf_object(tmp_path, tiny_config, write_yaml):
    obj = np.ones((1, 2, 80, 80), np.complex64)
    obj[0, 1, 7, 9] = np.inf
    path = tmp_path / "object.npz"
    np.savez(path, obj=obj)
    config = config_with(
        tiny_config,
        write_yaml,
        model__object={
            "source": "file",
            "path": str(path),
            "key": "obj",
            "slices": 2,
            "slice_thickness_A": 3.905,
        },
    )
    return ["validate", config], [path], ["model.object", f"{path}:obj", "(0, 1, 7, 9)"]


# --------------------------------------------------------------------------------------------
# a damaged compressed chunk of the measurements
# --------------------------------------------------------------------------------------------

#: the chunk of tiny.h5's measurements (chunks (2, 2, 32, 32), grid (4, 4, 2, 2)) that is damaged:
#: scan rows 2-3, columns 2-3, detector rows 0-31, columns 32-63; row-major number 21 of 64
BAD_CHUNK_OFFSET = (2, 2, 0, 32)


def damaged_copy(tmp_path: Path) -> Path:
    """tiny.h5 byte for byte, with the bytes of one gzip chunk of /measurements overwritten."""
    path = tmp_path / "damaged.h5"
    shutil.copyfile(TINY, path)
    with h5py.File(path, "r") as f:
        dset = f["measurements"]
        assert dset.compression == "gzip" and dset.chunks == (2, 2, 32, 32)
        info = next(
            dset.id.get_chunk_info(i)
            for i in range(dset.id.get_num_chunks())
            if dset.id.get_chunk_info(i).chunk_offset == BAD_CHUNK_OFFSET
        )
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    return path


def case_damaged_chunk_in_memory(tmp_path, tiny_config, write_yaml):
    data = damaged_copy(tmp_path)
    return (
        ["validate", config_with(tiny_config, write_yaml, data)],
        [data],
        [str(data), "'/measurements'", "chunk 21 of 64", str(BAD_CHUNK_OFFSET)],
    )


def case_damaged_chunk_streamed(tmp_path, tiny_config, write_yaml):
    data = damaged_copy(tmp_path)
    config = config_with(
        tiny_config, write_yaml, data, data__memory_budget_MB=0.25
    )  # 1 MiB of patterns: streamed
    return (
        ["validate", config],
        [data],
        [str(data), "'/measurements'", "chunk 21 of 64", str(BAD_CHUNK_OFFSET)],
    )


def case_damaged_chunk_positions(tmp_path, tiny_config, write_yaml):
    """The same check where sources.read_array reads a chunked array (positions here)."""
    path = tmp_path / "positions.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("pos", data=tiny_positions(), chunks=(16, 2), compression="gzip")
        info = f["pos"].id.get_chunk_info_by_coord((32, 0))
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    scan = {"source": "file", "path": str(path), "key": "pos", "n_slow": 8, "n_fast": 8}
    return (
        ["validate", config_with(tiny_config, write_yaml, scan=scan)],
        [path],
        ["scan", str(path), "'/pos'", "chunk 2 of 4"],
    )


def test_streamed_reads_name_the_chunk_only_where_it_is_read(tmp_path):
    """Per-batch reads (streamed data): rows outside the damaged chunk read; rows inside name it."""
    from ptyrad_core.kernel.errors import DataError
    from ptyrad_core_plugins.loaders.hdf5 import HDF5Loader

    path = damaged_copy(tmp_path)
    meas = HDF5Loader(path, HDF5Loader.Options(key="measurements")).load()
    try:
        meas.as_patterns()
        assert not meas.in_memory
        good = meas.read(np.arange(0, 16))  # scan rows 0-1: chunks 0-15
        np.testing.assert_array_equal(good, tiny_patterns().reshape(N, 64, 64)[:16])
        with pytest.raises(
            DataError, match=r"damaged\.h5: dataset '/measurements': chunk 21 of 64 \(offset \(2, 2, 0, 32\)"
        ):
            meas.read(np.array([19, 27]))  # scan row 2 column 3, row 3 column 3
    finally:
        meas.close()


# --------------------------------------------------------------------------------------------
# config values
# --------------------------------------------------------------------------------------------

EXPERIMENT = {"energy_kV": 300, "conv_angle_mrad": 21.4, "dx_A": 0.19525, "aberrations": {"defocus": 100}}


def value_case(section: str, key: str, value, *names):
    """A config whose ``section.key`` (dotted inside the section) is ``value``."""

    def case(tmp_path, tiny_config, write_yaml):
        cfg = tiny_config()
        node = cfg.setdefault(section, {})
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        return ["validate", write_yaml(cfg)], [], [f"{section}.{key}", *names]

    return case


def case_nan_by_set(tmp_path, tiny_config, write_yaml):
    config = write_yaml(tiny_config())
    return (
        ["validate", config, "--set", "experiment.energy_kV=.nan"],
        [config],
        ["experiment.energy_kV", "not a finite number"],
    )


def case_absurd_pixel_size(tmp_path, tiny_config, write_yaml):
    cfg = tiny_config(experiment={**EXPERIMENT, "dx_A": 1e-9})
    return (
        ["validate", write_yaml(cfg)],
        [],
        ["experiment.dx_A", "bright-field disk would be", "at least 1 px"],
    )


def case_absurd_energy(tmp_path, tiny_config, write_yaml):
    cfg = tiny_config(experiment={**EXPERIMENT, "energy_kV": 1e-30})  # a wavelength of kilometres
    return (
        ["validate", write_yaml(cfg)],
        [],
        ["energy_kV = 1e-30", "bright-field disk would be", "at least 1 px"],
    )


# --------------------------------------------------------------------------------------------
# config files
# --------------------------------------------------------------------------------------------


def config_text(tiny_config) -> str:
    return yaml.safe_dump(tiny_config(), sort_keys=False)


def case_latin1_config(tmp_path, tiny_config, write_yaml):
    text = "# Messung: Probe geändert\n" + config_text(tiny_config)
    path = tmp_path / "latin1.yaml"
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xe4")
    return ["validate", path], [path], [str(path), "not UTF-8", f"byte {offset}", "0xe4"]


def case_utf16_config(tmp_path, tiny_config, write_yaml):
    path = tmp_path / "utf16.yaml"
    path.write_bytes(config_text(tiny_config).encode("utf-16"))
    return ["validate", path], [path], [str(path), "byte 0", "UTF-16"]


def case_binary_config(tmp_path, tiny_config, write_yaml):
    return ["validate", TINY], [], [str(TINY), "not UTF-8", "byte 0", "HDF5"]


def case_nul_in_config(tmp_path, tiny_config, write_yaml):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"data:\x00\n")
    return ["validate", path], [path], [str(path), "byte 5", "control character"]


def case_empty_config(tmp_path, tiny_config, write_yaml):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    return ["validate", path], [path], [str(path), "empty"]


def case_list_config(tmp_path, tiny_config, write_yaml):
    path = tmp_path / "list.yaml"
    path.write_text("- data\n- scan\n")
    return ["validate", path], [path], [str(path), "top level must be a mapping", "list"]


def case_directory_config(tmp_path, tiny_config, write_yaml):
    return ["validate", tmp_path], [], [str(tmp_path), "is a directory"]


CASES = {
    "all-zero patterns": case_all_zero,
    "noise patterns": case_noise,
    "noise patterns, fit_rbf": case_noise_fit_rbf,
    "dark frames with a hot pixel, fit_rbf": case_dark_frames_hot_pixel_fit_rbf,
    "NaN in positions .npy": case_nan_positions_npy,
    "-Inf in positions HDF5": case_inf_positions_h5,
    "NaN in positions text": case_nan_positions_text,
    "NaN in tilts file": case_nan_tilts,
    "NaN in probe file": case_nan_probe,
    "Inf in object file": case_inf_object,
    "damaged gzip chunk, in memory": case_damaged_chunk_in_memory,
    "damaged gzip chunk, streamed": case_damaged_chunk_streamed,
    "damaged gzip chunk of positions": case_damaged_chunk_positions,
    "energy_kV .inf": value_case("experiment", "energy_kV", float("inf"), "not a finite number"),
    "conv_angle_mrad .nan": value_case("experiment", "conv_angle_mrad", float("nan"), "not a finite number"),
    "defocus .inf": value_case("experiment", "aberrations.defocus", float("inf"), "not a finite number"),
    "dx_A 0": value_case("experiment", "dx_A", 0, "greater than 0"),
    "dx_A -0.2": value_case("experiment", "dx_A", -0.2, "greater than 0"),
    "slice_thickness_A .inf": value_case(
        "model", "object.slice_thickness_A", float("inf"), "not a finite number"
    ),
    "slice_thickness_A 0": value_case("model", "object.slice_thickness_A", 0, "greater than 0"),
    "mode_power 0": value_case("model", "probe.mode_power", 0.0, "between 0 and 1"),
    "occupancy negative": value_case("model", "object.occupancy", [-1.0], "each >= 0"),
    "seed -1": value_case("recon", "seed", -1, "greater than or equal to 0"),
    "memory budget .inf": value_case("data", "memory_budget_MB", float("inf"), "not a finite number"),
    "energy_kV 1e-30": case_absurd_energy,
    "affine asymmetry 2": value_case("scan", "affine.asymmetry", 2.0, "less than 2"),
    "energy_kV=.nan by --set": case_nan_by_set,
    "dx_A 1e-9": case_absurd_pixel_size,
    "Latin-1 config": case_latin1_config,
    "UTF-16 config": case_utf16_config,
    "binary file as config": case_binary_config,
    "NUL byte in config": case_nul_in_config,
    "empty config": case_empty_config,
    "list as config": case_list_config,
    "directory as config": case_directory_config,
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_named_error(name, tmp_path, tiny_config, write_yaml, cli, frozen, clean_error):
    args, inputs, names = CASES[name](tmp_path, tiny_config, write_yaml)
    config = [Path(a) for a in args[1:2] if Path(a).is_file()]
    inputs = frozen(*inputs, *config, TINY)
    outcome = cli(*args)
    clean_error(outcome, *names)
    assert len(outcome.err.strip().splitlines()) == 1, str(outcome)  # one line
    inputs.assert_unchanged()


def test_step_A_zero_for_a_raster(tiny_config, write_yaml, cli, clean_error):
    cfg = tiny_config(scan={"source": "raster", "step_A": 0, "n_slow": 8, "n_fast": 8})
    clean_error(cli("validate", write_yaml(cfg)), "scan.step_A", "greater than 0")


def test_nan_in_plugin_options_names_the_key(tiny_config, write_yaml, cli, clean_error):
    cfg = tiny_config(loss=[{"name": "gaussian", "options": {"dp_pow": float("nan")}}])
    clean_error(cli("validate", write_yaml(cfg)), "loss[0].options.dp_pow", "not a finite number")


def test_a_few_zero_patterns_warn_many_and_none_do_not_fail(tmp_path, tiny_config, write_yaml, cli):
    patterns = tiny_patterns()
    flat = patterns.reshape(N, 64, 64)
    flat[[0, 1]] = 0  # 2 of 64 (3 %): a blanked beam at the start of the scan, below the warning level
    few = data_file(tmp_path / "few.h5", patterns)
    outcome = cli("validate", config_with(tiny_config, write_yaml, few))
    assert outcome.code == 0 and "all zero" not in outcome.err, str(outcome)
    flat[10:20] = 0  # 12 of 64 (19 %): a warning naming how many and which
    many = data_file(tmp_path / "many.h5", patterns)
    outcome = cli("validate", config_with(tiny_config, write_yaml, many))
    assert outcome.code == 0, str(outcome)
    assert (
        "12 of 64 patterns are all zero" in outcome.err and "pattern 0, 1, 10, 11, 12, ..." in outcome.err
    ), str(outcome)


def test_bright_field_criterion_accepts_shifted_and_blurred_disks():
    """The contrast criterion finds the disk where it is (centre of intensity), and holds for a
    blurred disk; noise of any level fails it."""
    from ptyrad_core.kernel.errors import DataError
    from ptyrad_core.setup.preprocess import check_bright_field

    mean = tiny_patterns().reshape(N, 64, 64).mean(axis=0).astype(np.float64)
    radius = 21.4e-3 / (0.019687488 * 0.0800256)  # conv angle / (lambda dk): 13.6 px
    check_bright_field(mean, radius, "tiny", "experiment.dx_A")
    check_bright_field(np.roll(mean, (9, -12), axis=(0, 1)), radius, "tiny", "experiment.dx_A")
    from scipy.ndimage import gaussian_filter

    check_bright_field(gaussian_filter(mean, 3) + 0.05 * mean.max(), radius, "tiny", "experiment.dx_A")
    for level in (0.01, 2.0, 1e4):
        flat = np.random.default_rng(0).poisson(level, size=(N, 64, 64)).mean(axis=0) + 1e-12
        with pytest.raises(DataError, match="no bright-field disk"):
            check_bright_field(flat, radius, "noise", "experiment.dx_A")


# --------------------------------------------------------------------------------------------
# result files (show, report, and the --resume pre-check's inspect_result)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result_file(tmp_path_factory):
    """A 1-iteration run on tiny.h5."""
    from conftest import build_run

    cfg = {
        "data": {"path": str(TINY), "loader": "hdf5", "options": {"key": "measurements"}},
        "experiment": EXPERIMENT,
        "scan": {
            "source": "file",
            "path": str(TINY),
            "key": "positions_nominal_px",
            "n_slow": 8,
            "n_fast": 8,
        },
        "model": {"object": {"slices": 2, "slice_thickness_A": 3.905}},
        "loss": [{"name": "gaussian"}],
        "recon": {"iterations": 1, "batch_size": 16},
    }
    cfg["recon"]["iterations"] = 1
    cfg["output"] = {"dir": str(tmp_path_factory.mktemp("result")), "figures": False}
    run = build_run(cfg)
    run.run()
    return Path(run.result_path)


HOSTILE = '!!python/object/apply:os.system ["touch {marker}"]'


def edited(result_file: Path, tmp_path: Path, edit) -> Path:
    path = tmp_path / "result.h5"
    shutil.copyfile(result_file, path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def result_hostile_config(result_file, tmp_path):
    marker = tmp_path / "pwned"

    def edit(f):
        f.attrs["config"] = HOSTILE.format(marker=marker)

    return edited(result_file, tmp_path, edit), [
        "'config'",
        "not valid YAML",
        "python/object/apply:os.system",
    ]


def result_hostile_nested(result_file, tmp_path):
    def edit(f):
        cfg = yaml.safe_load(f.attrs["config"])
        text = yaml.safe_dump(cfg, sort_keys=False).replace(
            "iterations: 1", "iterations: !!python/name:os.system"
        )
        f.attrs["config"] = text

    return edited(result_file, tmp_path, edit), [
        "'config'",
        "not valid YAML at line",
        "python/name:os.system",
    ]


def result_bad_json(result_file, tmp_path):
    def edit(f):
        f.attrs["plugins"] = "[{'name': 'core'"

    return edited(result_file, tmp_path, edit), ["'plugins'", "not valid JSON"]


def result_newer_format(result_file, tmp_path):
    def edit(f):
        f.attrs["format_version"] = 99

    return edited(result_file, tmp_path, edit), ["'format_version'", "99"]


def result_missing_dataset(result_file, tmp_path):
    def edit(f):
        del f["object/phase"]

    return edited(result_file, tmp_path, edit), ["object/phase", "lacks"]


def result_bad_value(result_file, tmp_path):
    def edit(f):
        del f["tilts_mrad"]
        f["tilts_mrad"] = np.zeros(3)  # 1-D: show expects (1 or N, 2)

    return edited(result_file, tmp_path, edit), ["'tilts_mrad'", "shape (3,)", "(1, 2) or (N, 2)"]


def result_odd_config(result_file, tmp_path):
    def edit(f):
        f.attrs["config"] = "recon: 5\nloss: 3\ndata: [1]\n"  # valid YAML mapping, not a config's layout

    return edited(result_file, tmp_path, edit), ["not what a ptyrad_core result file holds"]


def result_damaged_chunk(result_file, tmp_path):
    path = tmp_path / "result.h5"
    shutil.copyfile(result_file, path)
    with h5py.File(path, "r") as f:
        info = f["object/phase"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    return path, ["'object/phase'", "cannot be read"]


def result_not_hdf5(result_file, tmp_path):
    path = tmp_path / "result.h5"
    path.write_text("iteration: 3\n")
    return path, ["not a readable HDF5 file"]


def result_truncated(result_file, tmp_path):
    path = tmp_path / "result.h5"
    data = result_file.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, ["not a readable HDF5 file", "truncated"]


def result_not_a_result(result_file, tmp_path):
    return TINY, ["not a ptyrad_core result file", "format"]


RESULT_CASES = {
    "hostile YAML tag in config": result_hostile_config,
    "hostile tag inside config": result_hostile_nested,
    "bad JSON in plugins": result_bad_json,
    "newer format version": result_newer_format,
    "missing dataset": result_missing_dataset,
    "value of the wrong shape": result_bad_value,
    "damaged chunk": result_damaged_chunk,
    "not HDF5": result_not_hdf5,
    "truncated": result_truncated,
    "a dataset, not a result": result_not_a_result,
}


@pytest.mark.parametrize("command", ["show", "report"])
@pytest.mark.parametrize("name", list(RESULT_CASES))
def test_bad_result_file_is_one_named_error(name, command, result_file, tmp_path, cli, frozen, clean_error):
    path, names = RESULT_CASES[name](result_file, tmp_path)
    out_dir = tmp_path / "report"
    inputs = frozen(path)
    args = [command, path] + (["-o", out_dir] if command == "report" else [])
    outcome = cli(*args)
    clean_error(outcome, str(path), *names)
    assert len(outcome.err.strip().splitlines()) == 1, str(outcome)
    inputs.assert_unchanged()
    assert not (tmp_path / "pwned").exists()
    assert not (out_dir / "report.html").exists()


def test_show_on_a_config_of_another_layout(result_file, tmp_path, cli, clean_error):
    """A config attribute that parses, but not into a config's layout: show cannot summarise it."""
    path, names = result_odd_config(result_file, tmp_path)
    clean_error(cli("show", path), str(path), *names)


def test_inspect_result_for_resume(result_file, tmp_path):
    from ptyrad_core.engine.results import REQUIRED, inspect_result
    from ptyrad_core.kernel.errors import DataError

    attrs = inspect_result(result_file, what="--resume")
    assert attrs["config"]["recon"]["iterations"] == 1 and isinstance(attrs["plugins"], list)
    path, _ = result_hostile_config(result_file, tmp_path)
    with pytest.raises(DataError, match=r"^--resume: .*result\.h5: attribute 'config' is not valid YAML"):
        inspect_result(path, what="--resume")
    assert not (tmp_path / "pwned").exists()
    (tmp_path / "x").mkdir()
    path = edited(result_file, tmp_path / "x", lambda f: f.__delitem__("checkpoint/torch_rng"))
    with pytest.raises(DataError, match=r"^--resume: .* lacks the dataset\(s\) checkpoint/torch_rng"):
        inspect_result(path, what="--resume", require=REQUIRED + ("checkpoint/torch_rng",))
