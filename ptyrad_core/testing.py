"""pytest fixtures for plugin authors, loaded through the ``pytest11`` entry point.

``ptyrad_pm``
    a fresh plugin manager with ptyrad-core's own plugins only (third-party autoload off).
``register_inline``
    ``register_inline(*plugins)`` returns a fresh manager with the given plugin objects
    (modules, classes or instances with ``@hookimpl`` functions) registered as well.
"""

from __future__ import annotations

import pytest

from ptyrad_core.kernel.plugin_manager import get_plugin_manager


@pytest.fixture
def ptyrad_pm():
    return get_plugin_manager(autoload=False)


@pytest.fixture
def register_inline():
    def make(*plugins, autoload: bool = False):
        return get_plugin_manager(autoload=autoload, inline=plugins)

    return make
