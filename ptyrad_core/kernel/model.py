"""The model container: every optimizable tensor of a reconstruction, and its forward pass.

Parameters (names used by the config's ``update`` section):

=================== ============================ ==================================================
name                shape, dtype                 meaning
=================== ============================ ==================================================
object_amplitude    (omode, Nz, NY, NX) float    transmission amplitude per mode and slice
object_phase        (omode, Nz, NY, NX) float    transmission phase, radians
probe               (pmode, Ny, Nx) complex      probe modes in real space, centred in the window
                                                 (stored as a real view ``(pmode, Ny, Nx, 2)``)
positions           (N, 2) float                 refinement of each scan position, object pixels
                                                 (y, x), added to the nominal position
tilts               (1 or N, 2) float            local beam tilt (t_y, t_x) in mrad, global or
                                                 one per position
slice_thickness     () float                     slice thickness dz in Angstrom
=================== ============================ ==================================================

Buffers: the integer crop corner and sub-pixel remainder of each nominal position, the
object-mode occupancies and the frequency grids. Each parameter has a learning rate and a
``start_iter`` / ``end_iter`` window (``end_iter`` exclusive); ``lr = 0`` freezes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor, nn

from ptyrad_core.kernel import forward as fwd
from ptyrad_core.kernel.components import DetectorModel
from ptyrad_core.kernel.fft import TorchFFT
from ptyrad_core.kernel.schedule import Schedule

PARAMETER_NAMES = ("object_amplitude", "object_phase", "probe", "positions", "tilts", "slice_thickness")


@dataclass(frozen=True)
class ParamSchedule(Schedule):
    """When and how fast one parameter is optimized (``update.<parameter>``): a :class:`Schedule` and
    ``lr`` (0: frozen)."""

    lr: float = 0.0

    def active(self, iteration: int) -> bool:
        return self.lr != 0 and self.runs_at(iteration)


class Batch:
    """The positions of one mini-batch, handed to loss terms, extensions and detectors.

    :ivar indices: ``(B,)`` int64 scan-position indices on the model's device.
    :ivar iteration: the current iteration (1-based).
    :ivar model: the :class:`PtychoModel`.
    """

    def __init__(self, indices: Tensor, iteration: int, model: PtychoModel):
        self.indices = indices
        self.iteration = iteration
        self.model = model

    @cached_property
    def object_patches(self) -> tuple[Tensor, Tensor]:
        """Amplitude and phase patches ``(B, omode, Nz, Ny, Nx)`` under the batch's windows
        (differentiable)."""
        m = self.model
        rows = m.window_rows(self.indices)
        b, win = len(self.indices), m.window

        def cut(x):
            return fwd.gather_patches(x, rows, b, win).permute(2, 1, 0, 3, 4)

        return cut(m.object_amplitude), cut(m.object_phase)


#: Build the transmission from amplitude and phase patches (two real gathers, polar on the
#: patches) rather than for the whole object (polar, one complex gather) when the batch's windows
#: hold fewer pixels than this fraction of one object slice: just below the measured crossover,
#: so that large scans with small batches skip a whole-object polar and its backward per batch
#: (benchmarks/patch_paths.py; figures in docs/benchmarks.md, "What made the difference").
PATCH_FIRST = 0.75


class PtychoModel(nn.Module):
    """Optimizable object, probe, positions, tilts and slice thickness, with their forward pass.

    :param object_amplitude: ``(omode, Nz, NY, NX)`` initial amplitude.
    :param object_phase: ``(omode, Nz, NY, NX)`` initial phase, radians.
    :param probe: ``(pmode, Ny, Nx)`` complex initial probe modes.
    :param positions_px: ``(N, 2)`` nominal window corners (y, x) in object pixels.
    :param tilts_mrad: ``(1, 2)`` or ``(N, 2)`` initial tilts.
    :param slice_thickness: dz in Angstrom.
    :param wavelength: electron wavelength in Angstrom.
    :param dx: real-space pixel size in Angstrom.
    :param occupancy: ``(omode,)`` object-mode weights, default equal.
    :param schedules: ``{parameter name: ParamSchedule}``; missing names are frozen.
    :param extensions: forward-model extensions, applied in order.
    :param detectors: detector stages (:class:`~ptyrad_core.kernel.detector.DetectorModel`), applied in order.
    :param scan_shape: ``(n_slow, n_fast)`` of the raster the positions come from, if any.
    :param dtype: real dtype (float32 or float64); complex tensors use the matching complex dtype.
    """

    # buffers (register_buffer), declared so that they type as tensors, not ``Tensor | Module``
    crop: Tensor
    frac: Tensor
    occupancy: Tensor
    fy: Tensor
    fx: Tensor
    fy_centred: Tensor
    fx_centred: Tensor

    def __init__(
        self,
        *,
        object_amplitude,
        object_phase,
        probe,
        positions_px,
        tilts_mrad,
        slice_thickness: float,
        wavelength: float,
        dx: float,
        occupancy=None,
        schedules: dict[str, ParamSchedule] | None = None,
        extensions: list[fwd.ForwardExtension] | None = None,
        detectors: list[DetectorModel] | None = None,
        scan_shape: tuple[int, int] | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        cplx = torch.complex64 if dtype == torch.float32 else torch.complex128
        amp = torch.as_tensor(np.asarray(object_amplitude), dtype=dtype)
        self.object_amplitude = nn.Parameter(amp.clone())
        self.object_phase = nn.Parameter(torch.as_tensor(np.asarray(object_phase), dtype=dtype).clone())
        probe_t = torch.as_tensor(np.asarray(probe)).to(cplx)
        self.probe_ri = nn.Parameter(torch.view_as_real(probe_t).clone())
        pos = np.asarray(positions_px, dtype=np.float64)
        crop = np.floor(pos)
        self.register_buffer("crop", torch.as_tensor(crop, dtype=torch.int64))
        self.register_buffer("frac", torch.as_tensor(pos - crop, dtype=dtype))
        self.positions = nn.Parameter(torch.zeros(pos.shape, dtype=dtype))
        self.tilts = nn.Parameter(
            torch.as_tensor(np.asarray(tilts_mrad, dtype=np.float64), dtype=dtype).reshape(-1, 2).clone()
        )
        self.slice_thickness = nn.Parameter(torch.tensor(float(slice_thickness), dtype=dtype))
        omode = amp.shape[0]
        occ = np.full(omode, 1.0 / omode) if occupancy is None else np.asarray(occupancy, dtype=np.float64)
        self.register_buffer("occupancy", torch.as_tensor(occ / occ.sum(), dtype=dtype))
        fy, fx = fwd.frequency_grid(self.window, dtype=dtype)
        self.register_buffer("fy", fy)
        self.register_buffer("fx", fx)
        # the same grid with zero frequency at N // 2, for the shift ramps (forward.multislice)
        fy_centred, fx_centred = fwd.centred(fy, fx)
        self.register_buffer("fy_centred", fy_centred, persistent=False)
        self.register_buffer("fx_centred", fx_centred, persistent=False)
        self.wavelength = float(wavelength)
        self.dx = float(dx)
        self.schedules = {name: ParamSchedule() for name in PARAMETER_NAMES}
        self.schedules.update(schedules or {})
        exts, dets = list(extensions or []), list(detectors or [])
        self.extensions = nn.ModuleList(exts)
        self.detectors = nn.ModuleList(dets)
        self.scan_shape = tuple(scan_shape) if scan_shape is not None else None
        #: FFT backend of the slice recursion (:func:`ptyrad_core.kernel.fft.select`; ``recon.fft``)
        self.fft = TorchFFT()
        #: scan positions per chunk of the slice recursion, None = the whole batch
        #: (``recon.positions_per_pass``)
        self.positions_per_pass: int | None = None
        self._chains = {hook: [e for e in exts if e.overrides(hook)] for hook in fwd.ForwardExtension.HOOKS}
        components: list[fwd.ForwardExtension | DetectorModel] = [*exts, *dets]
        for component in components:
            component.setup(self)

    # -- views -----------------------------------------------------------------------------

    @property
    def probe(self) -> Tensor:
        """Complex probe modes ``(pmode, Ny, Nx)`` (a view of the stored parameter)."""
        return torch.view_as_complex(self.probe_ri)

    @property
    def window(self) -> tuple[int, int]:
        ny, nx = self.probe_ri.shape[1:3]
        return ny, nx

    @property
    def object_shape(self) -> tuple[int, int]:
        ny, nx = self.object_amplitude.shape[-2:]
        return ny, nx

    @property
    def n_positions(self) -> int:
        return self.crop.shape[0]

    def refined_positions(self) -> Tensor:
        """Current window corners ``(N, 2)`` in object pixels (nominal + refinement)."""
        return self.crop.to(self.frac.dtype) + self.frac + self.positions

    def parameter(self, name: str) -> nn.Parameter:
        """The optimizable tensor behind a config parameter name."""
        return self.probe_ri if name == "probe" else getattr(self, name)

    def assign(self, name: str, value: Tensor) -> None:
        """Overwrite a parameter in place (for constraints); ``probe`` takes a complex tensor."""
        with torch.no_grad():
            if name == "probe":
                value = torch.view_as_real(value.to(self.probe.dtype))
            self.parameter(name).copy_(value)

    def set_iteration(self, iteration: int) -> list[str]:
        """Switch gradients on for the parameters whose schedule is active; return their names."""
        active = []
        for name in PARAMETER_NAMES:
            on = self.schedules[name].active(iteration)
            self.parameter(name).requires_grad_(on)
            if on:
                active.append(name)
        return active

    def window_rows(self, indices: Tensor) -> Tensor:
        """Flat object index ``(B * Ny,)`` of the first pixel of each window row
        (:func:`~ptyrad_core.kernel.forward.window_rows`)."""
        return fwd.window_rows(self.crop[indices], self.window, self.object_shape[1])

    # -- forward ---------------------------------------------------------------------------

    def forward(self, indices: Tensor, iteration: int = 0) -> tuple[Tensor, Batch]:
        """Predicted measurements ``(B, My, Mx)`` for scan positions ``indices``, and the batch."""
        batch = Batch(indices, iteration, self)
        amplitude: Tensor = self.object_amplitude
        phase: Tensor = self.object_phase
        for ext in self._chains["object"]:
            amplitude, phase = ext.object(amplitude, phase, self)
        rows = self.window_rows(indices)
        if (
            len(indices) * self.window[0] * self.window[1]
            < PATCH_FIRST * amplitude.shape[-2] * amplitude.shape[-1]
        ):
            # the windows cover less than the object: build the complex transmission for them alone
            patches = fwd.transmission(
                *(fwd.gather_patches(x, rows, len(indices), self.window) for x in (amplitude, phase))
            )
        else:
            patches = fwd.gather_patches(fwd.transmission(amplitude, phase), rows, len(indices), self.window)
        probe = self.probe
        for ext in self._chains["probe"]:
            probe = ext.probe(probe, self)
        ramps = fwd.shift_ramps(
            self.frac[indices] + self.positions[indices], self.fy_centred, self.fx_centred
        )
        tilts = self.tilts if self.tilts.shape[0] == 1 else self.tilts[indices]
        propagators = fwd.fresnel_propagator(
            self.fy, self.fx, self.dx, self.wavelength, self.slice_thickness, tilts
        )
        for ext in self._chains["propagator"]:
            propagators = ext.propagator(propagators, batch, self)
        patterns = fwd.multislice(
            probe,
            ramps,
            patches,
            propagators,
            self.occupancy,
            self.fft,
            centred_ramps=True,
            chunk=self.positions_per_pass,
        )
        for ext in self._chains["patterns"]:
            patterns = ext.patterns(patterns, batch, self)
        for stage in self.detectors:
            patterns = stage(patterns, batch)
        return patterns, batch
