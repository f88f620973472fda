"""Total-variation regularisation of the object phase, as a ptyrad_core plugin package.

Components (``ptyrad-core plugins`` lists them after ``pip install``):

- loss term ``tv_phase``: smoothed isotropic TV of the phase under the batch's probe windows;
- constraint ``tv_phase``: the proximal operator of the isotropic TV (Chambolle's projection
  algorithm) applied to the phase of every slice and object mode.
"""

from .plugin import TVPhaseLoss, TVPhaseProx, divergence, gradient, total_variation, tv_prox

__version__ = "0.1.0"

__all__ = [
    "TVPhaseLoss",
    "TVPhaseProx",
    "gradient",
    "divergence",
    "total_variation",
    "tv_prox",
    "__version__",
]
