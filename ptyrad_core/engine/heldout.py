"""Held-out validation: detector pixels kept out of the training loss and scored with it.

A fraction ``f`` of the detector pixels of every pattern is held out (``recon.validation``).
Pixels, not whole positions: every position keeps constraining the object through the pixels it
keeps, so the problem stays as well posed as without validation; holding out whole positions
would remove their overlap and leave the object under them unconstrained.

The split is defined on the compared grid (the measurements after the detector stages'
``measurements()`` transform), ``(My, Mx)`` pixels, for ``N`` scan positions, by two arrays drawn
from the seed:

- ``u`` ``(My*Mx,)`` float64 in [0, 1), one number per pixel;
- ``s`` ``(N,)`` float64 in [0, 1), one number per position;

pixel ``p`` of position ``n`` is held out when ``(u[p] + s[n]) % 1 < f``. Both arrays are
stratified (a random permutation of ``(k + v_k) / K``, ``v_k`` uniform in [0, 1)): each is
uniform on [0, 1), and every window of length ``f`` on the circle holds ``f K`` of them up to
one. So every position holds out ``f My Mx`` pixels (+-1), a different subset at each position,
and each pixel is held out at ``f N`` positions (+-1). A batch's mask costs ``B * My * Mx`` adds
and compares.

Training compares ``torch.where(mask, meas, pred)`` with ``meas``: a held-out pixel carries no
residual and no gradient, for any loss term. The held-out loss uses the same loss stack and
weights on the same forward pass (:func:`heldout_loss`)::

    heldout = (sum_t w_t term_t(where(mask, pred, meas), meas) - sum_t w_t term_t(meas, meas)) / f

the subtraction removes what the kept pixels and the pattern-independent terms (sparsity, TV)
contribute; dividing by ``f`` puts runs with different fractions on a comparable scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ptyrad_core.kernel.errors import DataError, PtyradError

#: the largest whole-scan mask kept on a device (bytes: positions x pixels); beyond it each batch
#: computes its own
MASK_CACHE_BYTES = 256 * 2**20
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

    def mask(self, indices: torch.Tensor, keep_all: bool = True) -> torch.Tensor:
        """``(B, My, Mx)`` bool on the device of ``indices``: True where the pixel of that
        position (``indices``: ``(B,)`` scan-position indices) is held out.

        ``keep_all``: keep the whole scan's mask on the device (one byte per pixel, a quarter of
        the float32 patterns) when it is under :data:`MASK_CACHE_BYTES`; a run whose measurements
        are streamed from disk passes False, so that its memory stays within its budget.
        """
        device = indices.device
        full = self._device.get((device, "all"))
        if full is None and keep_all and self.n_positions * self.shape[0] * self.shape[1] <= MASK_CACHE_BYTES:
            # every position's mask once, one byte per pixel: a batch then indexes it instead of
            # recomputing the comparison at every batch of every iteration
            every = torch.arange(self.n_positions, device=device)
            step = max(1, 2**22 // (self.shape[0] * self.shape[1]))  # bounds the float64 temporaries
            full = torch.cat([self._compute(every[i : i + step]) for i in range(0, self.n_positions, step)])
            self._device[(device, "all")] = full
        return full[indices] if full is not None else self._compute(indices)

    def _compute(self, indices: torch.Tensor) -> torch.Tensor:
        """The definition, ``(u[p] + s[n]) % 1 < fraction``, for the positions ``indices``."""
        device = indices.device
        if device not in self._device:
            # float64 as the definition; a device without it (Apple MPS) decides in float32
            dtype = torch.float64 if device.type != "mps" else torch.float32
            self._device[device] = (
                torch.as_tensor(self.pixel_u, dtype=dtype, device=device),
                torch.as_tensor(self.position_s, dtype=dtype, device=device),
            )
        u, s = self._device[device]
        total = u.unsqueeze(0) + s[indices].unsqueeze(1)
        total = torch.where(total >= 1, total - 1, total)  # (u + s) % 1 for u, s in [0, 1)
        return (total < self.fraction).view(len(indices), *self.shape)

    def mask_numpy(self, indices) -> np.ndarray:
        """:meth:`mask` in numpy (for checks and tests)."""
        total = (self.pixel_u[None, :] + self.position_s[np.asarray(indices)][:, None]) % 1.0
        return (total < self.fraction).reshape(len(indices), *self.shape)

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


def train_pred(pred: torch.Tensor, meas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The prediction the training loss sees: the measurement at held-out pixels (no residual,
    no gradient there), ``pred`` elsewhere. Shapes ``(B, My, Mx)``."""
    return torch.where(mask, meas.to(pred.dtype), pred)


def heldout_loss(
    loss_terms, pred: torch.Tensor, meas: torch.Tensor, mask: torch.Tensor, batch, fraction: float
):
    """The held-out loss of one batch, a 0-d tensor (no gradient).

    ``(sum_t w_t term_t(where(mask, pred, meas), meas) - sum_t w_t term_t(meas, meas)) / fraction``

    :param loss_terms: ``(label, weight, term)`` triples, the run's loss stack.
    :param pred: ``(B, My, Mx)`` predicted patterns (of the training forward pass).
    :param meas: ``(B, My, Mx)`` measurements on the compared grid.
    :param mask: ``(B, My, Mx)`` bool, True at held-out pixels (:meth:`Split.mask`).
    :param fraction: the split's fraction.
    """
    with torch.no_grad():
        pred = pred.detach()
        reference = meas.to(pred.dtype)
        scored = torch.where(mask, pred, reference)
        # a term that reads no pattern contributes the same to both sums: skipped
        terms = [(w, term) for _, w, term in loss_terms if getattr(term, "reads_patterns", True)]
        total = sum((w * term(scored, meas, batch) for w, term in terms), pred.new_zeros(()))
        base = sum((w * term(reference, meas, batch) for w, term in terms), pred.new_zeros(()))
        return (total - base) / fraction
