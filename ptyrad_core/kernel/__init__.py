"""The kernel: hooks, registries, config schema, model, forward engine, FFT, data containers."""
