"""Partial temporal coherence for ptyrad_core: the forward extension ``defocus_spread``."""

from .plugin import DefocusSpread, defocus_samples

__version__ = "0.1.0"

__all__ = ["DefocusSpread", "defocus_samples", "__version__"]
