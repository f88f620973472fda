"""Lifecycle plugins shipped with ptyrad_core: progress, run log, figures, TIFF, convergence."""
