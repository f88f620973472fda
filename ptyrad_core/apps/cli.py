"""The ``ptyrad-core`` command line.

    ptyrad-core run CONFIG [--set dotted.key=value ...] [--resume RESULT.h5] [--nproc N] [--quiet | --verbose]
    ptyrad-core validate CONFIG [--set ...] [--overwrite]
    ptyrad-core convert FILE [-o OUT.yaml [--overwrite]]
    ptyrad-core tune CONFIG [--workers N]
    ptyrad-core show RESULT.h5
    ptyrad-core report RESULT.h5 [-o DIR] [--overwrite]
    ptyrad-core frc A.h5 B.h5 [-o PLOT.png [--overwrite]]
    ptyrad-core simulate SPEC.yaml [-o OUT.h5] [--overwrite]
    ptyrad-core plugins [--json] [--schema]
    ptyrad-core docs hooks|config|plugins
    ptyrad-core new-plugin NAME --family FAMILY [--dir DIR] [--overwrite]

A CONFIG in another program's format is translated by the plugin that recognises it
(``ptyrad_translate_config``); its notes are printed as warnings. ``convert`` writes the
translation as a native config, with the notes as comments at the top.

No command writes to a file it reads (``ptyrad_core.setup.readonly``): a command with an output file
replaces an existing one only when it is its own previous output, or with ``--overwrite``; a
file it reads is refused even then. ``validate`` writes nothing (a dry run).

Errors that ptyrad_core raises on purpose (bad config, bad data, a failing plugin) are printed
as one message without a traceback, with exit status 2; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ptyrad_core.kernel.errors import ConfigError, OutputError, PtyradError, RunInterrupted, one_line

console = Console(stderr=True)


def _plugin_manager_for(args):
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager
    from ptyrad_core.setup.config_file import load_config

    if getattr(args, "config", None):
        config = load_config(args.config, args.set)
        return get_plugin_manager(
            config.plugins.modules, config.plugins.disable, base_dir=config.origin.folder
        ), config
    return get_plugin_manager(), None


def launch_local(argv: list[str], nproc: int) -> int:
    """``ptyrad-core run ... --nproc N``: the same command in N processes on this machine, started by
    torchrun (``python -m torch.distributed.run --standalone``); returns torchrun's exit status."""
    import os
    import signal
    import subprocess

    if "RANK" in os.environ:
        raise PtyradError(
            "--nproc: this process already runs under torchrun (RANK is set); leave --nproc out"
        )
    rest, skip = [], False
    for arg in argv:  # the same arguments without --nproc
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    env = dict(os.environ)
    from ptyrad_core.setup.runtime import usable_cpus

    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // nproc)))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "ptyrad_core.apps.cli",
        *rest,
    ]
    previous = signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C reaches torchrun and the workers directly
    try:
        return subprocess.call(cmd, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_run(args) -> int:
    from ptyrad_core.engine.loop import Reconstruction
    from ptyrad_core.setup.config_file import load_config

    if args.nproc is not None:
        if args.nproc < 1:
            raise PtyradError(f"--nproc must be >= 1, got {args.nproc}")
        if args.nproc > 1:
            return launch_local(args.argv, args.nproc)
    config = load_config(args.config, args.set)
    print_notes(config)
    run = Reconstruction(config, quiet=args.quiet, resume=args.resume, overwrite=args.overwrite)
    try:
        run.run()
    finally:
        run.close()
    if not run.world.is_main:
        return 0
    h = run.history
    table = Table(title=f"ptyrad-core: {run.iteration} iterations", show_header=True)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("final loss", f"{h['loss'][-1]:.6g}")
    for name, values in h["loss_terms"].items():
        table.add_row(f"  {name}", f"{values[-1]:.6g}")
    times = sorted(h["time_s"][1:] or h["time_s"])
    table.add_row("median time / iteration", f"{times[len(times) // 2]:.4f} s")
    if run.world.enabled:
        table.add_row("processes", str(run.world.size))
    for key, value in run.peak_memory.items():
        table.add_row(f"peak memory ({'resident' if key == 'rss' else key})", f"{value:.0f} MiB")
    table.add_row("result", str(run.result_path))
    if not args.quiet:
        Console().print(table)
    return 0


def dry_run(func):
    """``validate`` writes nothing: not even the bytecode cache of a local plugin module."""
    import functools

    @functools.wraps(func)
    def wrapper(args):
        previous = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            return func(args)
        finally:
            sys.dont_write_bytecode = previous

    return wrapper


@dry_run
def cmd_validate(args) -> int:
    import numpy as np

    from ptyrad_core.kernel.config import component_specs, validate_components
    from ptyrad_core.setup.initialize import build_model, prepare_data, select_device

    pm, config = _plugin_manager_for(args)
    print_notes(config)
    from ptyrad_core.setup.optim_check import check_config

    components = validate_components(config, pm, checks=(check_config,))
    data = prepare_data(config, pm, components, dry_run=True, overwrite=args.overwrite)  # writes nothing
    meas = data.measurements
    from ptyrad_core.setup.memory import describe, target_device

    model = build_model(
        config,
        data,
        components,
        select_device("cpu"),
        np.random.default_rng(config.recon.seed),
        pm,
        memory_device=target_device(config.recon.device),
    )
    # what run refuses before the data are read is refused here too: the device, the positions
    # taking part (recon.indices), the output folder's name and every file the run would write
    from types import SimpleNamespace

    from ptyrad_core.engine import builder, outputs, results
    from ptyrad_core.engine.loop import RESULT_NAME

    device_note = None
    try:
        select_device(config.recon.device)
    except ConfigError as exc:
        import torch

        try:
            gpu = torch.device(config.recon.device).type == "cuda"
        except RuntimeError:
            gpu = False
        if not gpu:  # not a device at all: an error, as in run
            raise
        # a config for GPU nodes validated on a login node: valid, with a note
        device_note = f"{exc}: run on this machine would refuse it"
    plan = builder.batch_plan(config, model)
    folder = builder.output_folder(config, model, len(plan.indices))
    result = folder / RESULT_NAME
    try:
        slot = results.check_slot(result, config, overwrite=args.overwrite)
    except OutputError:
        if (
            not results.is_result_file(result)
            or results.check_slot(result, config, overwrite=True) != "replace"
        ):
            raise  # a file the run reads, a folder, a foreign file: errors
        # a finished result: the config is valid; run needs --resume or --overwrite (a note)
        slot = "result"
    outputs.check_observer_files(
        pm, SimpleNamespace(output_dir=folder, config=config), config, overwrite=args.overwrite
    )
    ob = model.object_amplitude.shape
    print(f"{args.config}: valid")
    print(
        f"  data      {meas.source}: {meas.n} patterns of {meas.pattern_shape[0]} x {meas.pattern_shape[1]}"
    )
    print(
        f"  sampling  dx = {model.dx:.5g} A, lambda = {model.wavelength:.5g} A, "
        f"detector edge {model.wavelength / (2 * model.dx) * 1e3:.2f} mrad, "
        f"aperture {config.experiment.conv_angle_mrad} mrad"
    )
    print(f"  object    {ob[0]} mode(s) x {ob[1]} slice(s) x {ob[2]} x {ob[3]} px; every probe window fits")
    print(f"  probe     {model.probe.shape[0]} mode(s) of {model.window[0]} x {model.window[1]} px")
    for estimate in model.memory_estimate:
        print(f"  memory    {describe(estimate)}")
    from ptyrad_core.setup.scan import (
        scan_extent,
        scan_step,
    )  # the scan's geometry in Angstrom: a wrong calibration shows here

    pos, dx = model.refined_positions().detach().cpu().double().numpy(), model.dx
    step, (fy, fx) = scan_step(pos), scan_extent(pos, model.window)
    taking_part = (
        "" if len(plan.indices) == len(pos) else f" ({len(plan.indices)} taking part, recon.indices)"
    )
    print(
        f"  scan      {len(pos)} positions{taking_part}, step {step * dx:.4g} A ({step:.4g} px), "
        f"field of view {fy * dx:.4g} x {fx * dx:.4g} A ({fy:.4g} x {fx:.4g} px)"
    )
    what = {
        "new": "new",
        "replace": "replaced (--overwrite)",
        "result": "holds a result: run it with --resume to continue it or --overwrite to replace it",
    }[slot]
    print(f"  output    {result}: {what}")
    print(f"  plugins   {', '.join(f'{f}:{s.name}' for f, _, s in component_specs(config))}")
    if device_note is not None:
        print(f"  note      {device_note}")
    for note in data.notes:  # what the preprocessing found, and what an export would write
        print(f"  note      {note}")
    return 0


def print_notes(config) -> None:
    """The notes of a translated config, as warnings."""
    for note in config._notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def cmd_convert(args) -> int:
    import yaml

    from ptyrad_core.kernel.config import build_config, validate_components
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager
    from ptyrad_core.setup.config_file import is_native, read_yaml, translate_file

    path = Path(args.file)
    raw, _ = read_yaml(path)
    if is_native(raw):
        raise ConfigError(f"{path}: already a native ptyrad_core config")
    pm = get_plugin_manager()
    translated = translate_file(path, raw, args.set, pm)
    if translated is None:
        raise ConfigError(f"{path}: no installed plugin translates this file")
    native, notes = translated
    config = build_config(native, str(path), "", path.resolve().parent)
    from ptyrad_core.setup.optim_check import check_config

    validate_components(config, pm, checks=(check_config,))
    if args.output:  # never the file it reads, nor any file the converted config reads
        from ptyrad_core.engine.outputs import check_new_file
        from ptyrad_core.setup.readonly import config_inputs, starts_with

        check_new_file(
            args.output,
            "-o",
            inputs=[path, *config_inputs(config)],
            overwrite=args.overwrite,
            is_previous_output=lambda p: starts_with(p, CONVERT_HEADER),
            kind="output of convert",
        )
    header = [f"{CONVERT_HEADER} {path.resolve()} by `ptyrad-core convert`."]
    if notes:
        header.append("# Translation notes:")
        header += ["#   " + line for note in notes for line in note.splitlines()]
    text = (
        "\n".join(header)
        + "\n\n"
        + yaml.safe_dump(native, sort_keys=False, default_flow_style=None, width=100)
    )
    if args.output:
        _write_text_atomic(Path(args.output), text)
        console.print(f"wrote {args.output} ({len(notes)} notes)", highlight=False)
    else:
        sys.stdout.write(text)
    return 0


CONVERT_HEADER = "# ptyrad_core config translated from"


def _write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` under a temporary name in the same folder, then rename it to ``path``."""
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def cmd_plugins(args) -> int:
    pm, _ = _plugin_manager_for(args)
    rows = []
    for family, registry in pm.registries.items():
        for entry in registry.entries():
            info = pm.info.get(entry.plugin)
            rows.append(
                {
                    "family": family,
                    "name": entry.name,
                    "plugin": entry.plugin,
                    "source": info.source if info else "?",
                    "distribution": info.distribution if info else None,
                    "version": info.version if info else None,
                    "options": entry.cls.Options.model_json_schema() if args.schema else None,
                }
            )
    observers = [
        {
            "plugin": i.name,
            "source": i.source,
            "distribution": i.distribution,
            "version": i.version,
            "hooks": i.hooks,
        }
        for i in pm.info.values()
        if any(h.startswith("ptyrad_on_") or h == "ptyrad_configure" for h in i.hooks)
    ]
    errors = [str(e) for e in pm.load_errors]
    if args.json or args.schema:
        print(json.dumps({"components": rows, "observers": observers, "load_errors": errors}, indent=2))
        return 0
    table = Table(title="ptyrad-core plugins")
    for col in ("family", "name", "plugin", "source", "version"):
        table.add_column(col)
    for r in rows:
        dist = f"{r['distribution']} {r['version']}" if r["distribution"] else (r["version"] or "-")
        table.add_row(r["family"], r["name"], r["plugin"], r["source"], dist)
    for o in observers:
        dist = f"{o['distribution']} {o['version']}" if o["distribution"] else "-"
        table.add_row(
            "lifecycle",
            ", ".join(h.removeprefix("ptyrad_") for h in o["hooks"]),
            o["plugin"],
            o["source"],
            dist,
        )
    Console().print(table)
    for e in errors:
        console.print(f"[yellow]warning:[/] {escape(e)}", highlight=False)
    return 0


def cmd_tune(args) -> int:
    from ptyrad_core.apps.tune import tune_command

    if args.workers < 1:
        raise PtyradError(f"--workers must be >= 1, got {args.workers}")
    tune_command(args.config, args.set, workers=args.workers, worker=args.worker)
    return 0


def cmd_show(args) -> int:
    from ptyrad_core.apps.show import show_command

    show_command(args.result, truth=args.truth)
    return 0


def cmd_report(args) -> int:
    from ptyrad_core.apps.report import write_report
    from ptyrad_core.kernel.errors import DataError

    path = Path(args.result)
    if path.is_dir():
        raise DataError(f"report: {str(path)!r} is a directory; expected a result file (result.h5)")
    if not path.is_file():
        raise DataError(f"report: result file {str(path)!r} does not exist")
    from ptyrad_core.apps.report import check_report_targets

    check_report_targets(path, Path(args.output) if args.output else None, overwrite=args.overwrite)
    try:
        page = write_report(path, Path(args.output) if args.output else None)
    except (OSError, ValueError) as exc:
        raise DataError(f"report: cannot read {path} as a ptyrad_core result file: {exc}") from None
    print(page)
    return 0


def cmd_frc(args) -> int:
    from ptyrad_core.apps.metrics import frc_command

    frc_command(
        args.a,
        args.b,
        args.output,
        window=None if args.window == "none" else args.window,
        threshold=args.threshold,
        overwrite=args.overwrite,
    )
    return 0


def cmd_simulate(args) -> int:
    from ptyrad_core.apps.simulate import simulate_command

    simulate_command(args.spec, args.output, overwrite=args.overwrite)
    return 0


def cmd_new_plugin(args) -> int:
    from ptyrad_core.apps.scaffold import new_plugin

    root = new_plugin(args.name, args.family, args.dir, overwrite=args.overwrite)
    console.print(f"wrote the {args.family} plugin package {root}", highlight=False)
    print(f"  pip install -e {root}\n  pytest {root / 'tests'}\n  ptyrad-core plugins")
    return 0


def cmd_docs(args) -> int:
    from ptyrad_core.apps.docgen import config_reference, hooks_reference, plugins_reference

    pages = {"hooks": hooks_reference, "config": config_reference, "plugins": plugins_reference}
    print(pages[args.what](), end="")
    return 0


HELP_OVERWRITE = (
    "replace an existing output file that is not this command's previous output "
    "(a file the command reads is never replaced)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptyrad-core", description="Multislice electron ptychography by automatic differentiation."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("config", help="YAML config file")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value by its dotted path, e.g. recon.iterations=5 (repeatable)",
        )
        p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logging")

    p = sub.add_parser("run", help="run a reconstruction")
    with_config(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display or summary")
    p.add_argument(
        "--resume", metavar="RESULT.h5", help="continue from the checkpoint in a result file of this config"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the result already in the output folder (by default a run refuses to)",
    )
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="data-parallel run in N processes on this machine, started by torchrun (docs/scaling.md)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a config and its data without reconstructing (writes nothing)")
    with_config(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="check as `run --overwrite` would: an export may replace an existing file (never an input)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("convert", help="write a config in another program's format as a native config")
    p.add_argument("file", help="YAML file to translate")
    p.add_argument("-o", "--output", metavar="OUT.yaml", help="write here instead of to standard output")
    p.add_argument("--overwrite", action="store_true", help=HELP_OVERWRITE)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value before writing (native sections after translation, others before)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("plugins", help="list plugins and their components")
    p.add_argument("config", nargs="?", help="also load the plugins this config names")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--schema", action="store_true", help="include each component's options JSON schema")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("tune", help="hyperparameter search (Optuna) over the config's `tune` section")
    with_config(p)
    p.add_argument(
        "--workers", type=int, default=1, help="local worker processes on the same study (default 1)"
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("show", help="summarise a result file")
    p.add_argument("result", help="result.h5")
    p.add_argument(
        "--truth", metavar="DATA.h5", help="also print the projected-phase error against this ground truth"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", help="draw the figures and report.html of a result file")
    p.add_argument("result", help="result.h5")
    p.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="where figures/ and report.html go (default: next to the result)",
    )
    p.add_argument("--overwrite", action="store_true", help=HELP_OVERWRITE)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("frc", help="Fourier ring correlation of two reconstructions (projected phase)")
    p.add_argument("a", help="result.h5 (or a dataset with /ground_truth)")
    p.add_argument("b", help="result.h5 (or a dataset with /ground_truth)")
    p.add_argument("-o", "--output", metavar="PLOT.png", help="also write a plot of the curve")
    p.add_argument("--overwrite", action="store_true", help=HELP_OVERWRITE)
    p.add_argument(
        "--window", choices=["hann", "tukey", "none"], default="hann", help="edge taper before the FFT"
    )
    p.add_argument(
        "--threshold", type=float, default=1 / 7, help="FRC threshold for the resolution (default 1/7)"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_frc)

    p = sub.add_parser(
        "simulate", help="write a synthetic dataset (patterns, positions, ground truth) from a spec YAML"
    )
    p.add_argument("spec", help="simulation spec YAML (see ptyrad_core.apps.simulate.SimulationSpec)")
    p.add_argument("-o", "--output", metavar="OUT.h5", help="overrides the spec's output")
    p.add_argument("--overwrite", action="store_true", help=HELP_OVERWRITE)
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_simulate)

    from ptyrad_core.kernel.plugin_manager import FAMILIES

    p = sub.add_parser(
        "new-plugin", help="write a plugin package (pyproject, plugin module, test, README) that runs"
    )
    p.add_argument("name", help="the component's name in a config, a lowercase identifier (e.g. my_filter)")
    p.add_argument("--family", required=True, choices=list(FAMILIES), help="which kind of component")
    p.add_argument("--dir", default=".", help="where the package folder ptyrad-NAME goes (default: here)")
    p.add_argument(
        "--overwrite", action="store_true", help="write the package's files into an existing package folder"
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_new_plugin)

    p = sub.add_parser("docs", help="print a generated reference page (markdown)")
    p.add_argument("what", choices=["hooks", "config", "plugins"])
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_docs)
    return parser


def _version() -> str:
    from ptyrad_core.kernel import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while the command starts up (imports), before a run owns it
        console.print("[yellow]interrupted[/] while starting: nothing was read or written")
        return 130


def _main(argv: list[str] | None) -> int:
    from ptyrad_core.setup.runtime import configure_threads

    configure_threads()  # before torch loads: thread counts and OpenMP's wait policy
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if args.verbose:
        logging.getLogger("ptyrad_core").setLevel(logging.DEBUG)
    try:
        return args.func(args)
    except RunInterrupted as exc:
        console.print(f"[yellow]stopped:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 128 + exc.signum
    except PtyradError as exc:
        if args.verbose:
            raise
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except (MemoryError, RuntimeError) as exc:
        # an allocation no estimate foresaw (a preprocessing step asked for a huge array): numpy's
        # MemoryError, torch's CPU allocator ("can't allocate"), CUDA's OutOfMemoryError
        if args.verbose or not (
            isinstance(exc, MemoryError) or "allocate" in str(exc) or "out of memory" in str(exc)
        ):
            raise
        console.print(
            f"[bold red]error:[/] {args.command}: not enough memory ({one_line(exc)}); lower what the "
            "config asks to allocate (preprocessing pads or resampling, detector stages, object size, "
            "recon.batch_size) or data.memory_budget_MB",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    except KeyboardInterrupt:
        # outside a run's loop (which stops with RunInterrupted): files are written under temporary
        # names and renamed when complete, so nothing that existed has changed
        console.print(f"[yellow]interrupted[/] ({args.command}): existing files are unchanged")
        return 130


if __name__ == "__main__":
    sys.exit(main())
