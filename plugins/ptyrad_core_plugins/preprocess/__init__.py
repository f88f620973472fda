"""Built-in plugins of the ``preprocess`` family: one module per component, each listed in
ptyrad-core's pyproject under the ``ptyrad_core.plugins`` entry-point group."""
