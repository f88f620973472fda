"""Held-out validation: detector pixels kept out of the training loss and scored with it.

A fraction ``f`` of the detector pixels of every pattern is held out (``recon.validation``).
Pixels, not whole positions: every position keeps constraining the object through the pixels it
keeps, so the problem stays as well posed as without validation; holding out whole positions
would remove their overlap and leave the object under them unconstrained.

The split is defined on the compared grid (the measurements after the detector stages'
``measurements()`` transform), ``M = My*Mx`` pixels, for ``N`` scan positions, by two arrays
drawn from the seed:

- ``u`` ``(M,)`` float64 in [0, 1), one number per pixel; its ranks ``r[p]`` (0 .. M-1) order
  the pixels at random;
- ``s`` ``(N,)`` float64 in [0, 1), one number per position; ``o[n] = floor(s[n] M)`` is the
  position's offset in that order;

pixel ``p`` of position ``n`` is held out when ``(r[p] - o[n]) mod M < K``, ``K = max(1,
round(f M))``: every position holds out exactly ``K`` pixels, a window of the random order that
starts at its own offset. Both arrays are stratified (``n`` of them a random permutation of ``(k + v_k) / n``,
``v_k`` uniform in [0, 1)), so each pixel is held out at ``K N / M`` positions (+-1). A batch's
held-out pixels are one gather from the order (:meth:`Split.pixels`), ``B K`` integers.

Training compares ``pred`` with the measurements in which every held-out pixel carries the
(detached) prediction instead of its count (:func:`train_meas`): no held-out count reaches the
optimizer, by any loss term and through any normalisation, and a held-out pixel carries no
residual (a term minimised at ``pred == meas`` gives it no gradient; one that couples pixels, as
a mean pattern, may move it through the other pixels' data only). The replacement is a scatter of
``B K`` values into the batch's measurements, in place where they are the run's own copy: no
pass over the predicted patterns in the autograd graph, forward or backward.

The held-out pixels are scored on the same forward pass (no extra multislice) by
``recon.validation.score``: by default the Poisson deviance per measured count
(:class:`CountDeviance`: lowest where the prediction is the expected count, at any dose, which
an amplitude misfit is not); or loss terms, the run's stack (``score: loss``) or listed ones
(:func:`heldout_loss`): a term that declares itself ``pixelwise`` (its value depends on the pixel
values alone, not on where they lie in the pattern, as a mean of a per-pixel misfit) is
evaluated on the held-out pixels alone, given as
``(B, 1, K)`` tensors, so its held-out value is on the training loss's scale and costs ``f`` of a
pattern evaluation; any other term that reads the patterns contributes::

    (term(where(mask, pred, meas), meas) - term(meas, meas)) / f

what the held-out pixels' prediction adds to it, per held-out fraction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ptyrad_core.kernel.errors import DataError, PtyradError
from ptyrad_core.kernel.model import Batch
from ptyrad_core.setup import memory

log = logging.getLogger("ptyrad_core")

#: groups of positions (interleaved by index, each spans the scan) whose held-out losses give the
#: spread of a difference between two states (:func:`tied`); 16 leaves 15 degrees of freedom
GROUPS = 16

#: the model tensors that make up a state (the best state kept for ``recon.stop.keep: best``)
STATE_NAMES = ("object_amplitude", "object_phase", "probe_ri", "positions", "tilts", "slice_thickness")

# a stream of the seed's generator of its own: the split does not depend on, nor changes, the
# numbers the run draws for batches and noise
_STREAM = 17


def _stratified(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` numbers in [0, 1), one in each interval [k/n, (k+1)/n), in random order."""
    return (rng.permutation(n) + rng.random(n)) / n


@dataclass
class Split:
    """Which detector pixels of which positions are held out.

    :ivar fraction: the fraction ``f`` of the pixels held out, 0 < f <= 0.5.
    :ivar seed: the seed the arrays were drawn from.
    :ivar shape: ``(My, Mx)``, the compared grid.
    :ivar pixel_u: ``(My*Mx,)`` float64 in [0, 1), one per pixel (row-major).
    :ivar position_s: ``(N,)`` float64 in [0, 1), one per scan position.
    """

    fraction: float
    seed: int
    shape: tuple[int, int]
    pixel_u: np.ndarray
    position_s: np.ndarray
    _device: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def make(cls, seed: int, fraction: float, n_positions: int, shape: tuple[int, int]) -> Split:
        """The split of ``n_positions`` patterns of ``shape`` pixels drawn from ``seed``."""
        if not 0 < fraction <= 0.5:
            raise PtyradError(f"recon.validation.fraction: expected a number in (0, 0.5], got {fraction}")
        rng = np.random.default_rng([int(seed), _STREAM])
        my, mx = (int(shape[0]), int(shape[1]))
        return cls(
            float(fraction),
            int(seed),
            (my, mx),
            _stratified(rng, my * mx),
            _stratified(rng, int(n_positions)),
        )

    @property
    def n_positions(self) -> int:
        return len(self.position_s)

    @property
    def held_per_position(self) -> int:
        """``K``: the held-out pixels of every position."""
        return max(1, round(self.fraction * self.shape[0] * self.shape[1]))

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """On ``device``, cached: the pixel order twice over ``(2M,)`` (a window that passes the
        end continues at the start without a remainder), the offsets ``o`` ``(N,)`` and
        ``arange(K)``, int64."""
        tables = self._device.get(device)
        if tables is None:
            m = self.shape[0] * self.shape[1]
            order = np.tile(np.argsort(self.pixel_u, kind="stable"), 2)
            offset = np.floor(self.position_s * m).astype(np.int64) % m
            tables = tuple(
                torch.as_tensor(a, dtype=torch.int64, device=device)
                for a in (order, offset, np.arange(self.held_per_position))
            )
            self._device[device] = tables
        return tables

    def pixels(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` int64 on the device of ``indices``: the held-out pixels (row-major indices
        into the ``My*Mx`` compared pixels) of the positions ``indices`` ``(B,)``."""
        order, offset, window = self._tables(indices.device)
        return order[offset[indices].unsqueeze(1) + window]

    def mask(self, indices: torch.Tensor, keep_all: bool = True) -> torch.Tensor:
        """``(B, My, Mx)`` bool on the device of ``indices``: True where the pixel of that
        position (``indices``: ``(B,)`` scan-position indices) is held out.

        The whole scan's mask, one byte per pixel (a quarter of the float32 measurements), is
        built once per device when it is at most ``memory.HELDOUT_MASK_CACHE_BYTES`` (the memory
        estimate counts it); a batch then indexes
        it (a scatter per batch costs about as much as the masking itself, docs/validation.md).
        Above that, or with ``keep_all`` False (a run whose measurements are streamed, whose memory
        stays within its budget), each batch builds its own."""
        device = indices.device
        full = self._device.get((device, "mask"))
        size = self.n_positions * self.shape[0] * self.shape[1]
        if full is None and keep_all and size <= memory.HELDOUT_MASK_CACHE_BYTES:
            every = torch.arange(self.n_positions, device=device)
            step = max(1, 2**20 // self.held_per_position)  # bounds the int64 index temporaries
            full = torch.cat([self._build(every[i : i + step]) for i in range(0, self.n_positions, step)])
            self._device[(device, "mask")] = full
        return full[indices] if full is not None else self._build(indices)

    def _build(self, indices: torch.Tensor) -> torch.Tensor:
        pixels = self.pixels(indices)
        mask = torch.zeros(
            (len(pixels), self.shape[0] * self.shape[1]), dtype=torch.bool, device=pixels.device
        )
        return mask.scatter_(1, pixels, True).view(len(pixels), *self.shape)

    def mask_numpy(self, indices) -> np.ndarray:
        """The definition, ``(r[p] - o[n]) mod M < K``, in numpy (for checks and tests)."""
        m = self.shape[0] * self.shape[1]
        rank = np.argsort(np.argsort(self.pixel_u, kind="stable"), kind="stable")
        offset = np.floor(self.position_s[np.asarray(indices)] * m).astype(np.int64) % m
        held = (rank[None, :] - offset[:, None]) % m < self.held_per_position
        return held.reshape(len(offset), *self.shape)

    def check(self, shape: tuple[int, int], n_positions: int, where: str = "held-out split") -> None:
        """Refuse a split made for another grid or scan (one line)."""
        if tuple(shape) != self.shape or n_positions != self.n_positions:
            raise DataError(
                f"{where}: made for {self.n_positions} positions of {self.shape[0]} x {self.shape[1]} "
                f"pixels, but this run compares {n_positions} positions of {shape[0]} x {shape[1]} pixels; "
                "resume with the config that made the file"
            )

    # -- storage (the result file's ``validation`` group) ------------------------------------

    def write(self, group) -> None:
        """Store the arrays and ``fraction`` / ``seed`` / ``shape`` in an h5py group."""
        group["pixel_u"] = self.pixel_u
        group["position_s"] = self.position_s
        group.attrs["fraction"] = self.fraction
        group.attrs["seed"] = self.seed
        group.attrs["shape"] = np.asarray(self.shape, dtype=np.int64)

    @classmethod
    def read(cls, group, where: str = "validation") -> Split:
        """The split stored by :meth:`write`; a missing or inconsistent part is a one-line DataError."""
        try:
            u = np.asarray(group["pixel_u"][()], dtype=np.float64).reshape(-1)
            s = np.asarray(group["position_s"][()], dtype=np.float64).reshape(-1)
            fraction = float(group.attrs["fraction"])
            seed = int(group.attrs["seed"])
            shape = tuple(int(v) for v in np.asarray(group.attrs["shape"]).reshape(-1))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{where}: the held-out split cannot be read ({type(exc).__name__}: {exc}); expected "
                "datasets pixel_u, position_s and attributes fraction, seed, shape"
            ) from None
        if len(shape) != 2 or shape[0] * shape[1] != len(u):
            raise DataError(f"{where}: pixel_u has {len(u)} values; expected My*Mx for shape {shape}")
        if not (0 < fraction <= 0.5) or not (np.all((u >= 0) & (u < 1)) and np.all((s >= 0) & (s < 1))):
            raise DataError(
                f"{where}: fraction {fraction} or pixel_u / position_s outside their range [0, 1)"
            )
        return cls(fraction, seed, (shape[0], shape[1]), u, s)


class CountDeviance:
    """The held-out pixels' default score (``recon.validation.score: deviance``): the Poisson
    deviance per measured count,

        D = sum_p [ I_pred - I_meas + I_meas log(I_meas / (I_pred + eps)) ] / sum_p I_meas

    over the pixels given (``pred``, ``meas`` of any equal shapes, intensities), ``eps = 1e-6``
    times the mean measured intensity (``I_meas log I_meas`` is 0 where ``I_meas = 0``).

    Why not the loss stack: a score ranks predictions only if its expected value is lowest where
    the prediction is the expected count. ``pred - meas log pred`` is, for any distribution of the
    counts and any scale of the data (a scaled detector gives the same differences per count); an
    amplitude misfit ``(sqrt(pred) - sqrt(meas))^2`` is lowest at ``pred = E[sqrt(meas)]^2``,
    below the expected count where counts are few (0.38 of it at 0.5 expected electrons), so
    at low dose it prefers a model that predicts too little scattering: one stopped early.
    ``D`` is 0 for a prediction equal to the measured counts and is dimensionless. The
    measurements must not be negative (the data checks refuse negative values; a detector stage
    that makes them negative needs ``score: loss``, :meth:`Scorer.add` says so)."""

    pixelwise = True  # a sum over pixels: evaluated on the held-out pixels alone

    def __call__(self, pred: torch.Tensor, meas: torch.Tensor, batch=None) -> torch.Tensor:
        meas = meas.to(pred.dtype)
        total = meas.sum()
        # ``tiny``: where nothing was counted at all, 0 / (0 + eps) is still 0, not NaN
        eps = 1e-6 * total / meas.numel() + torch.finfo(pred.dtype).tiny
        # sums first and one logarithm per pixel: the cheaper form (docs/validation.md)
        value = pred.sum() - total + torch.xlogy(meas, meas / (pred + eps)).sum()
        return value / torch.where(total > 0, total, torch.ones_like(total))  # no counts at all: unnormalised


def _check_counts(terms, meas: torch.Tensor) -> None:
    """Refuse negative measured values where a term of ``terms`` is the count deviance (one line)."""
    if any(isinstance(t[2], CountDeviance) for t in terms) and bool((meas < 0).any()):
        raise DataError(
            "recon.validation.score: 'deviance' scores counts, but the measurements the detector "
            "stages give hold negative values; set recon.validation.score: loss"
        )


def held_prediction(pred: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """``(B, K)``: the detached prediction ``pred`` ``(B, My, Mx)`` at the held-out pixels
    ``pixels`` ``(B, K)`` (:meth:`Split.pixels`); one gather, shared by the training
    measurements (:func:`train_meas`) and the score (:meth:`Scorer.add`)."""
    return pred.detach().reshape(len(pred), -1).gather(1, pixels)


def train_meas(
    pred: torch.Tensor,
    meas: torch.Tensor,
    pixels: torch.Tensor,
    inplace: bool = False,
    held: torch.Tensor | None = None,
) -> torch.Tensor:
    """The measurements the training loss sees: at the held-out pixels ``pixels`` ``(B, K)``
    (:meth:`Split.pixels`) the detached prediction, elsewhere ``meas``. Shapes ``(B, My, Mx)``.

    ``inplace``: write into ``meas`` (the caller's own copy of the batch's rows; never storage
    that outlives the batch, such as a memory-mapped file or a plugin's cache); else a new tensor.
    ``held``: :func:`held_prediction` where the caller has it."""
    b = len(meas)
    held = (held_prediction(pred, pixels) if held is None else held).to(meas.dtype)
    if inplace and meas.is_contiguous():
        meas.view(b, -1).scatter_(1, pixels, held)
        return meas
    return meas.reshape(b, -1).scatter(1, pixels, held).view_as(meas)


def held_pixels(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, K)``: the values of ``x`` ``(B, My, Mx)`` at the held-out pixels, row-major in each
    pattern (every position holds out exactly ``K``; pixel-wise terms ignore the order)."""
    return x[mask].view(len(x), -1)


def _split_terms(loss_terms) -> tuple[list, list]:
    """``(pixelwise, layout)``: the ``(label, weight, term)`` triples of the stack's terms that
    read the patterns (a term that reads none contributes the same with and without held-out
    pixels)."""
    terms = [t for t in loss_terms if getattr(t[2], "reads_patterns", True)]
    pixelwise = [t for t in terms if getattr(t[2], "pixelwise", False)]
    return pixelwise, [t for t in terms if not getattr(t[2], "pixelwise", False)]


def _layout_value(layout, pred, meas, mask, batch, fraction: float) -> torch.Tensor:
    """``sum_t w_t (term_t(where(mask, pred, meas), meas) - term_t(meas, meas)) / fraction``."""
    reference = meas.to(pred.dtype)
    scored = torch.where(mask, pred, reference)
    total = pred.new_zeros(())
    for _, w, term in layout:
        total = total + w * (term(scored, meas, batch) - term(reference, meas, batch)) / fraction
    return total


def heldout_loss(
    loss_terms,
    pred: torch.Tensor,
    meas: torch.Tensor,
    mask: torch.Tensor,
    batch,
    fraction: float,
):
    """The held-out loss of one batch, a 0-d tensor (no gradient).

    ``sum_t w_t h_t`` over the terms that read the patterns, with ``h_t = term_t(pred_h, meas_h)``
    for a ``pixelwise`` term (``pred_h``, ``meas_h``: the held-out pixels, ``(B, 1, K)``) and
    ``h_t = (term_t(where(mask, pred, meas), meas) - term_t(meas, meas)) / fraction`` for any other.
    A run scores every iteration with :class:`Scorer`, which is this over the whole scan.

    :param loss_terms: ``(label, weight, term)`` triples, the run's loss stack.
    :param pred: ``(B, My, Mx)`` predicted patterns (of the training forward pass).
    :param meas: ``(B, My, Mx)`` measurements on the compared grid.
    :param mask: ``(B, My, Mx)`` bool, True at held-out pixels (:meth:`Split.mask`).
    :param fraction: the split's fraction.
    """
    pixelwise, layout = _split_terms(loss_terms)
    with torch.no_grad():
        pred = pred.detach()
        total = pred.new_zeros(())
        if pixelwise:
            pred_h, meas_h = (held_pixels(x, mask).unsqueeze(1) for x in (pred, meas))
            _check_counts(pixelwise, meas_h)
            for _, w, term in pixelwise:
                total = total + w * term(pred_h, meas_h, batch)
        if layout:
            total = total + _layout_value(layout, pred, meas, mask, batch, fraction)
        return total


class Scorer:
    """One iteration's held-out loss over the whole scan.

    Each batch hands over its predictions (:meth:`add`); the held-out pixels of every position
    are kept, ``(N, K)`` predicted and measured, and at the iteration's end (:meth:`value`) each
    pixel-wise term is evaluated once on all of them, as ``(N, 1, K)`` with a
    :class:`~ptyrad_core.kernel.model.Batch` of every position seen. So the value does not depend
    on how the iteration drew its batches (a per-batch value would: a term that normalises by
    the batch's mean measured intensity changes with the batch's positions), and the
    terms run once per iteration. Terms that read whole patterns are scored per batch
    (:func:`heldout_loss`) and averaged over the iteration's batches.

    Memory: ``2 N K`` numbers of the prediction's dtype (``2 f`` of the measurements), and
    ``N K`` more for a state kept to be compared later (:meth:`deferred_groups`), counted by
    :func:`ptyrad_core.setup.memory.estimate_run`. A run whose measurements are streamed from
    disk (they do not fit its memory budget) passes ``whole_scan=False``: every term is then
    scored per batch and the batches' values averaged, in memory of one batch.
    """

    def __init__(self, loss_terms, split: Split, whole_scan: bool = True, groups: bool = True):
        self.split = split
        self.whole_scan = whole_scan
        # False where the run has no use for them (tolerance 0, or keep last without patience)
        self.want_groups = groups
        self.pixelwise, self.layout = _split_terms(loss_terms)
        if not whole_scan:  # every term per batch
            self.pixelwise, self.layout = [], self.pixelwise + self.layout
        self._pred: torch.Tensor | None = None
        self._meas: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None
        self._known: torch.Tensor | None = None  # positions whose measured held-out pixels are kept
        self._measured = False  # every position's are
        self._layout_sum: torch.Tensor | None = None
        self._layout_batches = 0
        # after value(): (pred, meas, seen, iteration, model) of the positions seen, for the groups
        self._current: tuple | None = None
        self._vmap = True  # the groups are evaluated under torch.func.vmap until that fails once

    def start(self) -> None:
        """Forget the previous iteration."""
        if self._seen is not None:
            self._seen.zero_()
            self._measured = bool(self._known.all())
        self._layout_sum, self._layout_batches = None, 0

    def add(self, pred, meas, indices, mask, batch, pixels=None, held=None) -> None:
        """Keep one batch's held-out pixels (``pred``, ``meas``: ``(B, My, Mx)``; ``indices``
        ``(B,)``; ``mask`` ``(B, My, Mx)``, :meth:`Split.mask`, or ``None``: made here when a term
        scored per batch needs it; ``pixels`` ``(B, K)``, :meth:`Split.pixels`, or ``None``;
        ``held`` ``(B, K)``, :func:`held_prediction` at ``pixels``, or ``None``)."""
        with torch.no_grad():
            pred = pred.detach()
            if self.pixelwise:
                if self._pred is None or self._pred.dtype != pred.dtype or self._pred.device != pred.device:
                    shape = (self.split.n_positions, self.split.held_per_position)
                    self._pred = pred.new_empty(shape)
                    self._meas = pred.new_empty(shape)
                    self._seen = torch.zeros(shape[0], dtype=torch.bool, device=pred.device)
                    self._known = torch.zeros_like(self._seen)
                    self._measured = False
                # a gather by index: boolean indexing (``held_pixels``) is several times slower
                if pixels is None:
                    pixels = self.split.pixels(indices)
                b = len(pred)
                self._pred.index_copy_(0, indices, held_prediction(pred, pixels) if held is None else held)
                if not self._measured:  # measurements do not change: kept once every position is seen
                    held_meas = meas.reshape(b, -1).gather(1, pixels).to(pred.dtype)
                    _check_counts(self.pixelwise, held_meas)
                    self._meas.index_copy_(0, indices, held_meas)
                    self._known[indices] = True
                self._seen[indices] = True
            if self.layout:
                if mask is None:
                    mask = self.split.mask(indices, keep_all=self.whole_scan)
                value = heldout_loss(self.layout, pred, meas, mask, batch, self.split.fraction)
                self._layout_sum = value if self._layout_sum is None else self._layout_sum + value
                self._layout_batches += 1

    def value(self, iteration: int, model) -> torch.Tensor:
        """The iteration's held-out loss, a 0-d tensor: the pixel-wise terms on every position
        seen, plus the mean over the batches of the terms scored per batch. The values per group
        of positions that :func:`tied` compares are evaluated on request: :meth:`groups` now,
        :meth:`deferred_groups` when a later iteration needs them."""
        self._current = None
        with torch.no_grad():
            total = torch.zeros((), dtype=torch.float64)
            if self.pixelwise and self._seen is not None:
                every = bool(self._seen.all())
                seen = torch.arange(len(self._seen), device=self._seen.device)
                pred, meas = self._pred, self._meas
                if not every:  # a batch plan that leaves positions out: score the positions it ran
                    seen = seen[self._seen]
                    pred, meas = pred[seen], meas[seen]
                batch = Batch(seen, iteration, model)
                for _, w, term in self.pixelwise:
                    total = total + w * term(pred.unsqueeze(1), meas.unsqueeze(1), batch).double().cpu()
                if self.want_groups and len(seen) >= 2 * GROUPS:
                    self._current = (pred, meas, seen, iteration, model)
            if self._layout_batches:
                total = total + (self._layout_sum / self._layout_batches).double().cpu()
            return total

    def groups(self) -> np.ndarray | None:
        """``(G,)`` float64: the last :meth:`value`'s pixel-wise terms per group of positions
        (:meth:`_group_values`); ``None`` without pixel-wise terms, with fewer than ``2 G``
        positions seen, or where the run has no use for them."""
        if self._current is None:
            return None
        with torch.no_grad():
            return self._group_values(*self._current)

    def deferred_groups(self) -> Callable[[], np.ndarray | None]:
        """:meth:`groups` of the last :meth:`value`, evaluated at the first call (once): a copy
        of its ``(N, K)`` held-out predictions is kept (the buffer is overwritten by the next
        iteration), so a state that may never be compared (the held-out minimum while the loss
        keeps falling) costs a copy, not ``G`` evaluations of the stack."""
        if self._current is None:
            return lambda: None
        pred, meas, seen, iteration, model = self._current
        kept = (pred.clone(), meas, seen, iteration, model)  # measured rows never change: not copied
        cache: list = []

        def evaluate() -> np.ndarray | None:
            if not cache:
                with torch.no_grad():
                    cache.append(self._group_values(*kept))
            return cache[0]

        return evaluate

    def _group_values(self, pred, meas, seen, iteration: int, model) -> np.ndarray:
        """``(G,)`` float64: the weighted pixel-wise terms on each group of positions (position
        ``i`` of ``pred``, ``meas`` ``(n, K)`` in group ``i mod G``).

        The first ``G floor(n / G)`` positions make ``G`` equal groups, evaluated in one call of
        the stack under ``torch.func.vmap`` (one pass over the ``n K`` pixels instead of ``G``
        calls on small inputs); the ``n mod G`` groups with one position more are evaluated
        again whole, one call each. A stack that ``vmap`` cannot run (an autograd function
        without ``setup_context``, a data-dependent branch) is evaluated group by group, the
        same values to rounding. Under ``vmap`` the terms get the batch of every position seen:
        a pixel-wise term depends on the pixel values alone."""

        def stack(p, m, b):
            return sum(w * term(p, m, b) for _, w, term in self.pixelwise)

        def one(g):
            return stack(
                pred[g::GROUPS].unsqueeze(1),
                meas[g::GROUPS].unsqueeze(1),
                Batch(seen[g::GROUPS], iteration, model),
            )

        per = len(pred) // GROUPS
        values = None
        if self._vmap:
            whole = Batch(seen, iteration, model)

            def grouped(x):  # (per G, K) -> (G, per, 1, K): position j G + g is row j of group g
                return x[: per * GROUPS].view(per, GROUPS, -1).transpose(0, 1).unsqueeze(2)

            try:
                values = list(torch.func.vmap(lambda p, m: stack(p, m, whole))(grouped(pred), grouped(meas)))
            except Exception as exc:  # noqa: BLE001 - any failure: the plain loop below, which names a real error
                self._vmap = False
                values = None
                log.debug(
                    "held-out groups: the loss stack cannot be vectorised (%s); evaluated per group", exc
                )
        if values is None:
            values = [one(g) for g in range(GROUPS)]
        else:
            for g in range(len(pred) - per * GROUPS):  # the groups with one position more
                values[g] = one(g)
        # on the device until here; one transfer for all groups, not one sync per term
        return torch.stack(values).double().cpu().numpy()


def tied(groups: np.ndarray | None, reference: np.ndarray | None, tolerance: float) -> bool:
    """True when a state whose held-out loss is above the minimum's is *not significantly*
    above it: the mean of the per-group differences ``d = groups - reference`` (``(G,)`` each, the
    same positions' held-out pixels under the two states, :meth:`Scorer.groups`) is at most
    ``tolerance`` standard errors, ``mean(d) <= tolerance * std(d) / sqrt(G)`` (a paired test:
    the two states are scored on the same noisy pixels, so the noise common to both cancels and
    ``std(d)`` measures how much of the difference the draw of pixels could make).

    False without group values or with ``tolerance`` 0 (the plain minimum)."""
    if groups is None or reference is None or tolerance <= 0 or len(groups) != len(reference):
        return False
    d = np.asarray(groups, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return bool(d.mean() <= tolerance * d.std(ddof=1) / np.sqrt(len(d)))
