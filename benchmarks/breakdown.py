"""Per-batch time of the parts of one optimizer step of ptyrad_core, without the profiler.

    .venv/bin/python benchmarks/breakdown.py CASE [--iters 4]

CASE is a case name of ``compare_ptyrad.py`` (same data and settings). After two warm-up
iterations it runs ``--iters`` iterations batch by batch and prints the median time per batch
of the model's forward pass, the loss terms, the backward pass and the optimizer step (with
``zero_grad``), and, timed alone on tensors of the case's batch size, the slice recursion with
its adjoint (in the model's chunks of positions, ``recon.positions_per_pass``, and the whole
batch at once) and one batched FFT of the backend in use. ``torch.profiler`` slows some CPU
operators down many times on some machines (out-of-place complex products by 7 to 30x on the
development VM); this script only reads the clock between steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_ptyrad as cp  # noqa: E402


def median_ms(call, repeats: int = 30) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=list(cp.BY_NAME))
    ap.add_argument("--iters", type=int, default=4)
    args = ap.parse_args()
    case = cp.BY_NAME[args.case]
    path = cp.dataset(case.data)
    info = cp.file_info(path)
    from ptyrad_core.engine.loop import Reconstruction
    from ptyrad_core.kernel import forward as fwd
    from ptyrad_core.setup.config_file import load_config

    parts: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "ours.yaml"
        cfg.write_text(yaml.safe_dump(cp.ours_config(case, path, info, 2, tmp / "out")))
        run = Reconstruction(load_config(cfg), quiet=True)
        run.run(2)
        model, optimizer = run.model, run.optimizer
        for it in range(3, 3 + args.iters):
            model.set_iteration(it)
            for rows in run.batches():
                indices = torch.as_tensor(rows)
                t0 = time.perf_counter()
                pred, batch = model(indices, it)
                t1 = time.perf_counter()
                meas = run.data.batch(indices)
                loss = sum(w * term(pred, meas, batch) for _, w, term in run.loss_terms)
                t2 = time.perf_counter()
                loss.backward()
                t3 = time.perf_counter()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                t4 = time.perf_counter()
                for name, dt in (
                    ("model forward", t1 - t0),
                    ("loss terms", t2 - t1),
                    ("backward", t3 - t2),
                    ("optimizer step", t4 - t3),
                    ("whole batch", t4 - t0),
                ):
                    parts.setdefault(name, []).append(1e3 * dt)
        b = min(case.batch, model.n_positions)
        win = model.window
        patches = torch.polar(
            torch.ones(case.nz, case.omode, b, *win), torch.rand(case.nz, case.omode, b, *win)
        )
        probe = model.probe.detach().clone().requires_grad_(True)
        patches.requires_grad_(True)
        ramps = fwd.shift_ramps(torch.rand(b, 2), model.fy, model.fx)
        props = fwd.fresnel_propagator(
            model.fy,
            model.fx,
            model.dx,
            model.wavelength,
            model.slice_thickness.detach(),
            model.tilts.detach()[:1],
        )
        weight = torch.rand(b, *win)
        occupancy = model.occupancy if case.omode > 1 else None

        def recursion(chunk):
            out = fwd.multislice(probe, ramps, patches, props, occupancy, model.fft, chunk=chunk)
            torch.autograd.grad(out, [probe, patches], weight)

        waves = torch.randn(case.pmode, case.omode, b, *win, dtype=torch.complex64)
        n_calls = 2 * (1 + (2 * case.nz - 1))
        chunk = model.positions_per_pass
        t_rec, t_fft = median_ms(lambda: recursion(chunk)), median_ms(lambda: model.fft.fft_(waves))
        t_whole = median_ms(lambda: recursion(None)) if chunk is not None and chunk < b else t_rec
    print(f"{case.name}: {len(parts['whole batch'])} batches of {b}, median ms per batch")
    for name, values in parts.items():
        print(f"  {name:16s} {statistics.median(values):8.2f}")
    print(
        f"  slice recursion forward + adjoint alone {t_rec:.2f} ms in chunks of {chunk} positions "
        f"({t_whole:.2f} ms for the whole batch at once), of which FFTs {n_calls} x {t_fft:.3f} = "
        f"{n_calls * t_fft:.2f} ms ({model.fft!r}, whole batch)"
    )


if __name__ == "__main__":
    main()
