"""Bad input gets an error that names the file, key or array and what was expected."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.errors import ConfigError, DataError, PtyradError
from ptyrad_core.setup.config_file import apply_overrides, load_config


def test_valid_config_loads(tiny_config, write_yaml):
    config = load_config(write_yaml(tiny_config()))
    assert config.recon.iterations == 2 and config.loss[0].name == "gaussian"


def test_unknown_key_names_path_line_and_closest_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "data: {path: x.h5}\n"
        "experiment: {energy_kV: 300, conv_angle_mrad: 20, dx_A: 0.2}\n"
        "scan: {n_slow: 2, n_fast: 2, step_A: 0.5}\n"
        "model:\n"
        "  object: {slices: 1, slice_thickness_A: 2}\n"
        "loss: [{name: gaussian}]\n"
        "recon:\n"
        "  iterations: 1\n"
        "  batch_sise: 8\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert f"{path}:9: recon.batch_sise: unknown key 'batch_sise'; did you mean 'batch_size'?" in msg


def test_missing_section_and_bad_value_are_named(tiny_config):
    cfg = tiny_config()
    del cfg["experiment"]
    cfg["recon"]["iterations"] = -3
    with pytest.raises(ConfigError) as err:
        build_config(cfg, "cfg.yaml")
    msg = str(err.value)
    assert "experiment: required key is missing" in msg
    assert "recon.iterations: Input should be greater than 0" in msg


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("recon:\n  iterations: [1, 2\nloss: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: malformed YAML"):
        load_config(path)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file 'nope.yaml' does not exist"):
        load_config("nope.yaml")


def test_unknown_plugin_name_lists_registered_and_suggests(tiny_config):
    cfg = tiny_config(loss=[{"name": "gausian"}])
    with pytest.raises(ConfigError) as err:
        Reconstruction(build_config(cfg, "cfg.yaml"), quiet=True)
    msg = str(err.value)
    assert "loss[0].name: unknown loss 'gausian'; did you mean 'gaussian'?" in msg
    assert "Registered: " in msg


def test_a_held_out_score_term_is_resolved_and_checked_like_a_loss_term(tiny_config):
    cfg = tiny_config()
    cfg["recon"]["validation"] = {
        "score": [{"name": "poison"}, {"name": "gaussian", "options": {"dp_pow": -1}}]
    }
    with pytest.raises(ConfigError) as err:
        Reconstruction(build_config(cfg, "cfg.yaml"), quiet=True)
    msg = str(err.value)
    assert "recon.validation.score[0].name: unknown loss 'poison'; did you mean 'poisson'?" in msg
    assert "recon.validation.score[1].options.dp_pow: Input should be greater than 0" in msg


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        (
            "recon",
            "positions_per_pass",
            "abc",
            "recon.positions_per_pass: Input should be 'auto', or: input should be a valid integer",
        ),
        (
            "recon",
            "validation",
            {"score": "poisson"},
            "recon.validation.score: Input should be 'deviance' or 'loss', or: input should be a valid list",
        ),
        # a value that went into one of the types: that type's error alone, at the item
        (
            "recon",
            "validation",
            {"score": [{"nam": "poisson"}]},
            "recon.validation.score[0].nam: unknown key 'nam'; did you mean 'name'?",
        ),
    ],
)
def test_a_field_of_several_types_gives_one_line_at_the_field(tiny_config, section, key, value, expected):
    """pydantic reports a union field's error once per type, under tags such as ``.int`` or
    ``.literal['auto']``; the user sees the field and what it accepts, on one line."""
    cfg = tiny_config()
    cfg[section][key] = value
    with pytest.raises(ConfigError) as err:
        build_config(cfg, "cfg.yaml")
    lines = [line for line in str(err.value).splitlines() if "required key is missing" not in line]
    assert len(lines) == 1 and expected in lines[0], str(err.value)
    assert "literal[" not in str(err.value) and "list[" not in str(err.value)


def test_plugin_option_errors_carry_the_yaml_path(tiny_config):
    cfg = tiny_config(loss=[{"name": "gaussian", "options": {"dp_pow": -1, "dp_powr": 2}}])
    with pytest.raises(ConfigError) as err:
        Reconstruction(build_config(cfg, "cfg.yaml"), quiet=True)
    msg = str(err.value)
    assert "loss[0].options.dp_pow: Input should be greater than 0" in msg
    assert "loss[0].options.dp_powr: unknown key 'dp_powr'; did you mean 'dp_pow'?" in msg


def test_missing_data_file_is_named(tiny_config, tmp_path):
    cfg = tiny_config()
    cfg["data"]["path"] = str(tmp_path / "missing.h5")
    with pytest.raises(DataError, match=r"data.path: measurement file '.*missing.h5' does not exist"):
        Reconstruction(build_config(cfg), quiet=True)


def _write_h5(path, arr, key="dp"):
    with h5py.File(path, "w") as f:
        f[key] = arr
    return path


def test_wrong_measurement_shape_is_named(tiny_config, tmp_path):
    cfg = tiny_config()
    cfg["data"] = {
        "path": str(_write_h5(tmp_path / "flat.h5", np.ones((64, 4096), np.float32))),
        "options": {"key": "dp"},
    }
    with pytest.raises(
        DataError,
        match=r"flat.h5:dp: measurements must be 3-D \(N, ky, kx\) or 4-D \(Ny, Nx, ky, kx\), "
        r"got shape \(64, 4096\)",
    ):
        Reconstruction(build_config(cfg), quiet=True)


def test_pattern_count_mismatch_is_named(tiny_config, tmp_path):
    cfg = tiny_config()
    cfg["data"] = {
        "path": str(_write_h5(tmp_path / "few.h5", np.ones((60, 64, 64), np.float32))),
        "options": {"key": "dp"},
    }
    with pytest.raises(
        DataError,
        match=r"few.h5:dp: 60 diffraction patterns \(array shape \(60, 64, 64\)\), "
        r"but scan.n_slow x scan.n_fast = 8 x 8 = 64",
    ):
        Reconstruction(build_config(cfg), quiet=True)


@pytest.mark.parametrize("bad, match", [(np.nan, "NaN or infinite"), (-5.0, "negative values")])
def test_nan_and_negative_counts_are_rejected(tiny_config, tmp_path, bad, match):
    arr = np.ones((64, 64, 64), np.float32)
    arr[3, 10, 12] = bad
    cfg = tiny_config()
    cfg["data"] = {"path": str(_write_h5(tmp_path / "bad.h5", arr)), "options": {"key": "dp"}}
    with pytest.raises(DataError, match=match) as err:
        Reconstruction(build_config(cfg), quiet=True)
    assert "bad.h5:dp" in str(err.value)


def test_negative_counts_can_be_clipped(tiny_config, tmp_path):
    with h5py.File(
        tiny_config()["data"]["path"], "r"
    ) as f:  # real patterns: flat ones have no bright-field disk and are refused
        arr = f["measurements"][()].reshape(64, 64, 64)
    arr[3, 10, 12] = -5
    cfg = tiny_config()
    cfg["data"] = {
        "path": str(_write_h5(tmp_path / "neg.h5", arr)),
        "options": {"key": "dp"},
        "negative_values": "clip",
    }
    run = Reconstruction(build_config(cfg), quiet=True)
    assert run.measurements.array.min() == 0


def test_probe_window_must_fit_the_object(tiny_config):
    cfg = tiny_config()
    cfg["model"]["object"]["shape"] = [70, 70]
    with pytest.raises(
        DataError,
        match=r"probe windows \(64 x 64 px\) reach object pixels .* outside the object \(0..70, 0..70\)",
    ):
        Reconstruction(build_config(cfg), quiet=True)


def test_aperture_must_fit_the_detector(tiny_config):
    cfg = tiny_config()
    cfg["experiment"]["conv_angle_mrad"] = 60
    with pytest.raises(ConfigError, match="convergence angle 60.0 mrad does not fit the detector"):
        Reconstruction(build_config(cfg), quiet=True)


def test_bad_aberration_key(tiny_config):
    cfg = tiny_config()
    cfg["experiment"]["aberrations"] = {"C11": 3}
    with pytest.raises(ConfigError, match=r"aberration 'C11': order \(n=1, m=1\) does not exist"):
        Reconstruction(build_config(cfg), quiet=True)


def test_overrides_set_nested_and_list_values(tiny_config):
    cfg = apply_overrides(
        tiny_config(), ["recon.iterations=7", "loss.0.weight=0.5", "model.object.shape=[90, 90]"]
    )
    config = build_config(cfg)
    assert (
        config.recon.iterations == 7
        and config.loss[0].weight == 0.5
        and config.model.object.shape == (90, 90)
    )
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        apply_overrides(cfg, ["recon.iterations"])


def test_cli_reports_errors_without_traceback(tiny_config, write_yaml, cli):
    cfg = tiny_config()
    cfg["recon"]["batch_sise"] = 3
    path = write_yaml(cfg)
    proc = cli(
        "run", path
    )  # in this process; tests/test_cli_smoke.py checks the same through a child process
    assert proc.code == 2
    assert "recon.batch_sise: unknown key 'batch_sise'; did you mean 'batch_size'?" in proc.err
    assert "Traceback" not in proc.err


def test_all_errors_share_a_base_class():
    assert issubclass(ConfigError, PtyradError) and issubclass(DataError, PtyradError)


def test_loader_and_result_reader_options_are_checked_before_any_data_are_read(
    tiny_config, tmp_path, monkeypatch
):
    """Registry.resolve validates the loader's and the result readers' options with the other
    components: a wrong key is named with the rest, and nothing is read."""
    from ptyrad_core.setup import initialize

    def no_reading(*args, **kwargs):
        raise AssertionError("data were read before the options were checked")

    monkeypatch.setattr(initialize, "prepare_data", no_reading)
    result = tmp_path / "previous.h5"
    result.write_bytes(b"not read")  # a named reader needs no sniffing: the file is not opened
    cfg = tiny_config(loss=[{"name": "gaussian", "options": {"dp_pow": 1, "nope": 2}}])
    cfg["data"]["options"] = {"key": "measurements", "kee": 1}
    cfg["model"]["probe"] = {
        "source": "result",
        "path": str(result),
        "reader": "ptyrad_core",
        "reader_options": {"positions": "sideways"},
    }
    with pytest.raises(ConfigError) as err:
        Reconstruction(build_config(cfg, "cfg.yaml"), quiet=True)
    msg = str(err.value)
    assert "loss[0].options.nope: unknown key 'nope'" in msg
    assert "data.options.kee: unknown key 'kee'; did you mean 'key'?" in msg
    assert "model.probe.reader_options.positions" in msg


def test_unknown_loader_name_is_a_config_error_before_reading(tiny_config):
    cfg = tiny_config()
    cfg["data"]["loader"] = "hdf"
    with pytest.raises(ConfigError, match=r"data\.loader: unknown loader 'hdf'; did you mean 'hdf5'\?"):
        Reconstruction(build_config(cfg, "cfg.yaml"), quiet=True)


def test_config_origin_is_public(tiny_config, write_yaml, tmp_path):
    path = write_yaml(tiny_config())
    config = load_config(path)
    assert config.origin.file == path.resolve() and config.origin.folder == path.resolve().parent
    assert config.origin.source == str(path)
    assert config.origin.where(("recon", "iterations")).startswith(f"{path}:")
    assert config.resolve("x.npy") == path.resolve().parent / "x.npy"
    built = build_config(tiny_config())
    assert (
        built.origin.file is None
        and built.origin.source == "<config>"
        and built.origin.where(("loss",)) == "<config>"
    )


def test_registry_resolve_names_validates_and_sniffs():
    from pydantic import BaseModel, ConfigDict

    from ptyrad_core.kernel.config import Origin
    from ptyrad_core.kernel.errors import PluginError
    from ptyrad_core.kernel.registry import Registry

    class Reader:
        class Options(BaseModel):
            model_config = ConfigDict(extra="forbid")
            positions: str = "refined"

        def read(self):  # pragma: no cover - never called
            raise AssertionError

    reg = Registry("result_reader")
    reg.add("mine", Reader)
    origin = Origin(source="c.yaml", lines={("scan", "reader_options", "positon"): 7})
    entry, options = reg.resolve(
        "mine", {}, ("scan",), origin=origin, name_key="reader", field="reader_options"
    )
    assert entry.cls is Reader and options.positions == "refined"
    entry, _ = reg.resolve("auto", {}, ("scan",), sniff=lambda path: "mine", path="x.h5")
    assert entry.name == "mine"
    assert reg.resolve("auto", {}, ("scan",), sniff=lambda path: None, path="x.h5") is None
    with pytest.raises(
        PluginError, match=r"scan\.reader: unknown result_reader 'mien'; did you mean 'mine'\?"
    ):
        reg.resolve("mien", {}, ("scan",), name_key="reader")
    with pytest.raises(
        ConfigError, match=r"^c\.yaml:7: scan\.reader_options\.positon: unknown key 'positon'"
    ):
        reg.resolve(
            "mine", {"positon": 1}, ("scan",), origin=origin, name_key="reader", field="reader_options"
        )
