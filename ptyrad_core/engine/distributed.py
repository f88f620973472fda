"""Data-parallel reconstruction with ``torch.distributed``, launched by ``torchrun`` (or ``srun``).

Every process (rank) holds the whole model. Each global mini-batch (the same on every rank: the
batch generator has the same seed everywhere) is cut into ``world_size`` contiguous shares; a
rank runs the multislice forward and backward pass for its share only and reads only its
share's patterns when they are streamed from disk. The predicted patterns of the shares (and
the measured ones, when streamed; in memory every rank holds them all) are all-gathered, so every
rank evaluates the loss terms on the *whole* batch, exactly as one process would; this keeps
losses that are not a plain sum over positions (a batch-wide RMS, the normalisation by the
batch's mean intensity, a batch-averaged pattern) exact. The backward pass of the gather hands
each rank the gradient of its own rows only (times ``world_size``), and averaging the parameter
gradients over the ranks then gives exactly the single-process gradient:

    rank r: g_r = W * dL/dpred_r . dpred_r/dtheta + dL/dtheta|direct
    mean_r g_r = sum_r dL/dpred_r . dpred_r/dtheta + dL/dtheta|direct

(``dL/dtheta|direct``: terms that read the model directly, e.g. the object under the batch's
windows, computed identically on every rank). The optimizer step and the constraints then run
on identical gradients and parameters on every rank; the parameters are broadcast from rank 0
at the start and at every save so that rounding cannot make them drift apart.

The process group is set up from the environment torchrun (or SLURM with torchrun) provides:
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. NCCL on CUDA,
gloo on CPU. Every collective has the timeout ``recon.dist_timeout_s``; a failing or silent
peer becomes a :class:`~ptyrad_core.kernel.errors.DistributedError` instead of a hang.
"""

from __future__ import annotations

import datetime
import logging
import os
import re

import torch

from ptyrad_core.kernel.errors import ConfigError, DistributedError

log = logging.getLogger("ptyrad_core")


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 outside torchrun / srun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"environment: WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def split_sizes(n: int, world: int) -> list[int]:
    """Rows of each rank's share of ``n`` (as ``numpy.array_split``: the first ``n % world`` get one more)."""
    base, extra = divmod(n, world)
    return [base + (r < extra) for r in range(world)]


class World:
    """The processes of one run. A single process is a world of size 1 whose operations are no-ops.

    :ivar rank: this process's rank (0 writes every file).
    :ivar size: the number of processes.
    :ivar local_rank: rank on this machine (picks the GPU).
    """

    def __init__(
        self,
        rank: int = 0,
        size: int = 1,
        local_rank: int = 0,
        timeout_s: float = 600.0,
        device: torch.device | None = None,
        owns_group: bool = False,
    ):
        self.rank = rank
        self.size = size
        self.local_rank = local_rank
        self.timeout_s = timeout_s
        self.device = device or torch.device("cpu")
        self.owns_group = owns_group

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- setup -----------------------------------------------------------------------------

    @staticmethod
    def device_for_rank(device: torch.device) -> torch.device:
        """A CUDA device without an index becomes ``cuda:LOCAL_RANK`` in a multi-process run."""
        if device.type == "cuda" and device.index is None and env_world_size() > 1:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            if local >= torch.cuda.device_count():
                raise ConfigError(
                    f"recon.device: LOCAL_RANK {local} but this machine has {torch.cuda.device_count()} CUDA "
                    "device(s); start at most that many processes per node (torchrun --nproc-per-node)"
                )
            device = torch.device("cuda", local)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    @classmethod
    def from_env(cls, device: torch.device, timeout_s: float) -> World:
        """Join (or create) the process group described by the environment; size 1 when there is none."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(
                dist.get_rank(),
                dist.get_world_size(),
                int(os.environ.get("LOCAL_RANK", "0")),
                timeout_s,
                device,
            )
        size = env_world_size()
        if size <= 1:
            return cls(timeout_s=timeout_s, device=device)
        if not dist.is_available():
            raise DistributedError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise DistributedError(
                f"WORLD_SIZE={size} but {', '.join(missing)} not set: start the processes with torchrun "
                "(or ptyrad-core run --nproc N), which sets them"
            )
        rank = int(os.environ["RANK"])
        backend = "nccl" if device.type == "cuda" else "gloo"
        if (
            backend == "nccl"
        ):  # a timed-out collective raises in Python (so rank 0 can save) instead of aborting
            os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
        try:
            dist.init_process_group(
                backend,
                rank=rank,
                world_size=size,
                timeout=datetime.timedelta(seconds=timeout_s),
                **({"device_id": device} if device.type == "cuda" else {}),
            )
        except Exception as exc:  # rendezvous failures: a rank never came, the address is wrong, ...
            raise DistributedError(
                f"rank {rank} of {size}: could not join the process group at "
                f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({backend}) within "
                f"recon.dist_timeout_s = {timeout_s:g} s: {_first_line(exc)}"
            ) from None
        return cls(rank, size, int(os.environ.get("LOCAL_RANK", rank)), timeout_s, device, owns_group=True)

    def close(self) -> None:
        """Leave the process group (if this world created it), all ranks together: a rank that
        tore its connections down while rank 0 was still writing the result could abort in
        gloo's threads at exit (seen once in the test suite as ``terminate called without an
        active exception``). A peer that is already gone only skips the barrier."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                try:
                    dist.barrier()
                except Exception as exc:  # noqa: BLE001 - a lost peer: leave anyway
                    log.debug("rank %d: no barrier before leaving the group: %s", self.rank, exc)
                dist.destroy_process_group()
            self.owns_group = False

    # -- collectives -----------------------------------------------------------------------

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RuntimeError as exc:  # gloo / NCCL / the store: a peer died, hung or closed the group
            raise DistributedError(
                f"rank {self.rank} of {self.size}: {what} failed: another process of this run stopped, was "
                f"killed or did not answer within recon.dist_timeout_s = {self.timeout_s:g} s "
                f"({_first_line(exc)})"
            ) from None

    def share(self, n: int) -> tuple[int, int]:
        """``(start, stop)`` of this rank's share of ``n`` batch rows."""
        sizes = split_sizes(n, self.size)
        start = sum(sizes[: self.rank])
        return start, start + sizes[self.rank]

    def gather_rows(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """All ranks' shares of an ``n``-row batch, concatenated in batch order (differentiable:
        the gradient of this rank's rows, times the world size, flows back to ``local``)."""
        if not self.enabled:
            return local
        return _GatherRows.apply(local, self, split_sizes(n, self.size))

    def average_gradients(self, parameters, flags: list[float] = ()) -> list[float] | None:
        """Replace the gradient of every parameter that has one by its mean over the ranks.

        ``flags`` (small integers, e.g. a stop request) travel in the same ``all_reduce``; the
        return value is their maximum over the ranks (``None`` in a world of one process).
        """
        if not self.enabled:
            return None
        import torch.distributed as dist

        by_dtype: dict[torch.dtype, list] = {}
        for p in parameters:
            if p.requires_grad and p.grad is not None:  # the same set on every rank: same code, same graph
                by_dtype.setdefault(p.dtype, []).append(p)
        if not by_dtype:
            return self.maximum(list(flags)) if flags else []
        agreed: list[float] = []
        for i, group in enumerate(by_dtype.values()):
            parts = [p.grad.reshape(-1) for p in group]
            n_flags = len(flags) if i == 0 else 0
            if n_flags:  # one slot per rank, so that the sum is each rank's value
                slots = group[0].grad.new_zeros((self.size, n_flags))
                slots[self.rank] = torch.tensor(list(flags), dtype=slots.dtype)
                parts.append(slots.reshape(-1))
            flat = torch.cat(parts)
            self._call("averaging the gradients (all_reduce)", dist.all_reduce, flat)
            if n_flags:
                agreed = flat[-self.size * n_flags :].view(self.size, n_flags).amax(0).tolist()
            flat.div_(self.size)
            offset = 0
            for p in group:
                p.grad = flat[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
        return agreed

    def broadcast_parameters(self, module: torch.nn.Module) -> float:
        """Copy rank 0's parameters to every rank; return how far this rank's had drifted from
        them (the largest absolute difference; 0 when every step ran identically everywhere)."""
        if not self.enabled:
            return 0.0
        import torch.distributed as dist

        drift = 0.0
        with torch.no_grad():
            params = list(module.parameters())
            by_dtype: dict[torch.dtype, list] = {}
            for p in params:
                by_dtype.setdefault(p.dtype, []).append(p)
            for group in by_dtype.values():
                mine = torch.cat([p.detach().reshape(-1) for p in group])
                flat = mine.clone()
                self._call("broadcasting the parameters", dist.broadcast, flat, src=0)
                if flat.numel():
                    drift = max(drift, float((flat - mine).abs().max()))
                offset = 0
                for p in group:
                    p.copy_(flat[offset : offset + p.numel()].view_as(p))
                    offset += p.numel()
        return drift

    def maximum(self, values: list[float]) -> list[float]:
        """Element-wise maximum of ``values`` over the ranks (stop requests, peak memory)."""
        if not self.enabled:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self._call("agreeing on the state of the run (all_reduce)", dist.all_reduce, t, op=dist.ReduceOp.MAX)
        return t.tolist()


class _GatherRows(torch.autograd.Function):
    """All-gather of batch shares of unequal size (padded to the largest); the backward pass
    returns this rank's rows of the gradient times the world size (see the module docstring)."""

    @staticmethod
    def forward(ctx, local, world, sizes):
        import torch.distributed as dist

        ctx.world, ctx.sizes, ctx.local_rows = world, sizes, local.shape[0]
        rows = max(sizes)
        mine = sizes[world.rank]
        send = local[:mine]
        if mine < rows:
            send = torch.cat([send, send.new_zeros((rows - mine, *local.shape[1:]))])
        parts = [torch.empty_like(send) for _ in range(world.size)]
        world._call("gathering the batch (all_gather)", dist.all_gather, parts, send.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        world, sizes = ctx.world, ctx.sizes
        start = sum(sizes[: world.rank])
        mine = sizes[world.rank]
        g = grad.new_zeros((ctx.local_rows, *grad.shape[1:]))
        g[:mine] = grad[start : start + mine] * world.size
        return g, None, None


def _first_line(exc: BaseException) -> str:
    """The backend's message without its source location and boilerplate advice."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = re.sub(r"^\[[^\]]*\.(cc|cpp|h|hpp):\d+\]\s*", "", line)
    return line.split(". This is typically")[0].strip() or type(exc).__name__
