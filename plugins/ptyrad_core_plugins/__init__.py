"""The built-in plugins of ptyrad_core.

Each module registers its components through a registration hook and is listed in
ptyrad-core's pyproject under the ``ptyrad_core.plugins`` entry-point group, exactly as a
third-party package would list its own. Nothing in the kernel imports this package.
"""
