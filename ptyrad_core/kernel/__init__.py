"""The kernel: hooks, registries, config schema, model, forward engine, FFT, data containers.

``__version__`` is defined here, not in the package ``__init__``, so that every layer can name it
without importing the package top (which imports the engine and the apps; tests/test_architecture.py).
"""

__version__ = "0.1.0"  # the same as pyproject.toml's [project] version
