"""4D-STEM file formats for ptyrad_core through RosettaSciIO: the loader ``rsciio``."""

from .plugin import SNIFFED_SUFFIXES, RsciioLoader, reader_for

__version__ = "0.1.0"

__all__ = ["RsciioLoader", "SNIFFED_SUFFIXES", "reader_for", "__version__"]
