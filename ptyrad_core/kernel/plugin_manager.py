"""Plugin discovery and the pluggy plugin manager.

Where plugins come from, in order:

1. the core observers of :data:`DEFAULT_PLUGINS` (progress, run log, convergence, figures and
   report, TIFF exports), named ``core.*``;
2. the ``ptyrad_core.plugins`` entry-point group, read by pluggy with the standard library's
   ``importlib.metadata`` - the built-in plugins of ``plugins/`` are registered this way by
   ptyrad-core's own pyproject, exactly as a third-party package registers its own;
3. the config's ``plugins.modules``: dotted module names or paths to ``.py`` files (relative
   paths are taken from the config file's folder).

A plugin that fails to import is recorded as a :class:`~ptyrad_core.kernel.errors.PluginLoadError`,
not raised: it becomes fatal only if the config selects a component it would have provided.

Environment: ``PTYRAD_CORE_DISABLE_PLUGIN_AUTOLOAD=1`` loads only ptyrad-core's own entry points;
``PTYRAD_CORE_DISABLED_PLUGINS=a,b`` blocks plugins by name; ``PTYRAD_CORE_TRACE_PLUGINS=1``
prints every hook call.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from ptyrad_core.kernel import hookspecs
from ptyrad_core.kernel.errors import PluginError, PluginLoadError, PtyradError
from ptyrad_core.kernel.registry import Registry

#: The core observers, by module name (as pytest's ``default_plugins``), registered first and in this
#: order. Each module names its plugin (``PLUGIN_NAME``: ``core.progress``, ``core.logfile``,
#: ``core.convergence``, ``core.figures``, ``core.tiff``; the names ``plugins.disable`` takes) and
#: makes a fresh instance (``make_plugin()``: observers hold per-run state).
DEFAULT_PLUGINS = (
    "ptyrad_core.observers.progress",
    "ptyrad_core.observers.logfile",
    "ptyrad_core.observers.convergence",
    "ptyrad_core.observers.report",
    "ptyrad_core.observers.tiff",
)

ENTRY_POINT_GROUP = "ptyrad_core.plugins"
DISTRIBUTION = "ptyrad-core"

#: family name -> registration hook
FAMILIES = {
    "loss": "ptyrad_register_loss_terms",
    "constraint": "ptyrad_register_constraints",
    "forward": "ptyrad_register_forward_extensions",
    "detector": "ptyrad_register_detectors",
    "loader": "ptyrad_register_loaders",
    "preprocess": "ptyrad_register_preprocessors",
    "result_reader": "ptyrad_register_result_readers",
}


@dataclass
class PluginInfo:
    """Where a registered plugin came from."""

    name: str
    source: str  # "core", "built-in", "installed package", "config file", "config module", "inline"
    distribution: str | None = None
    version: str | None = None
    location: str | None = None
    hooks: list[str] = field(default_factory=list)


class PtyradPluginManager(pluggy.PluginManager):
    """A pluggy manager that also knows each plugin's origin and the component registries."""

    def __init__(self) -> None:
        super().__init__("ptyrad_core")
        self.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.load_errors: list[PluginLoadError] = []
        self.registries: dict[str, Registry] = {}
        self.known_names: set[str] = set()  # every plugin name seen, registered or blocked

    def register_plugin(self, plugin, name: str, source: str, distribution=None, version=None, location=None):
        self.known_names.add(name)
        if self.is_blocked(name):
            return None
        if self.has_plugin(name):
            raise PluginError(f"two plugins are named {name!r} ({self.info[name].source} and {source})")
        try:
            self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} ({source}): {exc}") from exc
        self.info[name] = PluginInfo(name, source, distribution, version, location)
        return plugin

    # -- registries ------------------------------------------------------------------------

    def build_registries(self) -> dict[str, Registry]:
        """Call every registration hook once, plugin by plugin, and keep the registries."""
        self.registries = {}
        for family, hookname in FAMILIES.items():
            registry = Registry(family)
            registry.load_errors = self.load_errors
            for impl in getattr(self.hook, hookname).get_hookimpls():
                registry._plugin = impl.plugin_name
                try:
                    impl.function(registry=registry)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} raised in {hookname}: {type(exc).__name__}: {exc}"
                    ) from exc
            registry._plugin = "<unknown>"
            self.registries[family] = registry
        for name, info in self.info.items():
            plugin = self.get_plugin(name)
            info.hooks = sorted(c.name for c in self.get_hookcallers(plugin) or [])
        return self.registries

    def registry(self, family: str) -> Registry:
        if not self.registries:
            self.build_registries()
        return self.registries[family]

    # -- lifecycle -------------------------------------------------------------------------

    def call_lifecycle(self, hookname: str, **kwargs) -> None:
        """Call a lifecycle hook; a plugin that raises is named in the error."""
        caller = getattr(self.hook, hookname)
        try:
            caller(**kwargs)
        except PtyradError:
            raise  # deliberate: a plugin saying what is wrong (or asking to stop) in its own words
        except Exception as exc:
            culprit = _culprit(exc, caller.get_hookimpls())
            if culprit is None:
                raise
            raise PluginError(
                f"plugin {culprit!r} raised in {hookname}: {type(exc).__name__}: {exc}"
            ) from exc


def _culprit(exc: BaseException, impls) -> str | None:
    """The name of the plugin whose hook function appears in ``exc``'s traceback."""
    codes = {impl.function.__code__: impl.plugin_name for impl in impls if hasattr(impl.function, "__code__")}
    tb = exc.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            found = codes[tb.tb_frame.f_code]
        tb = tb.tb_next
    return found


def _load_entry_points(pm: PtyradPluginManager, own_only: bool) -> None:
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"]
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            pm.known_names.add(ep.name)
            if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            builtin = _canonical(dist_name) == _canonical(DISTRIBUTION)
            if own_only and not builtin:
                continue
            source = "built-in" if builtin else "installed package"
            try:
                # one scan of the installed distributions for all entry points: pluggy's
                # load_setuptools_entrypoints(group, name) rescans them for every plugin it loads.
                # The distribution is recorded in pm.info below, not in pluggy's distinfo list.
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except (Exception, SystemExit) as exc:  # a broken third-party package must not break discovery
                pm.load_errors.append(PluginLoadError(ep.name, f"{source} {dist_name} {dist.version}", exc))
                continue
            if pm.has_plugin(ep.name):
                pm.info[ep.name] = PluginInfo(ep.name, source, dist_name, dist.version, ep.value)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def load_module_plugin(spec: str, base_dir: Path | None = None) -> tuple[types.ModuleType, str, str]:
    """Import a plugin named by the config: a ``.py`` path or a dotted module name.

    :return: (module, plugin name, source)
    """
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise PluginError(f"plugins.modules: plugin file {str(path)!r} does not exist")
        path = path.resolve()
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        modname = f"ptyrad_core_local_{path.stem}_{digest}"
        if modname in sys.modules:
            return sys.modules[modname], path.stem, "config file"
        module_spec = importlib.util.spec_from_file_location(modname, path)
        if module_spec is None or module_spec.loader is None:
            raise PluginError(f"plugins.modules: plugin file {str(path)!r} is not a Python module (.py)")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[modname] = module
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # exiting on import must not end the command quietly
            del sys.modules[modname]
            raise PluginError(
                f"plugins.modules: plugin file {str(path)!r} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        return module, path.stem, "config file"
    try:
        module = importlib.import_module(spec)
    except (Exception, SystemExit) as exc:
        raise PluginError(
            f"plugins.modules: module {spec!r} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    return module, spec, "config module"


def get_plugin_manager(
    modules: Iterable[str] = (),
    disable: Iterable[str] = (),
    base_dir: Path | None = None,
    autoload: bool | None = None,
    inline: Iterable[object] = (),
) -> PtyradPluginManager:
    """Build a plugin manager with every plugin discovered and the registries filled.

    :param modules: plugin modules named by a config (dotted names or ``.py`` paths).
    :param disable: plugin names to block (entry-point names, module names, file stems).
    :param base_dir: folder that relative ``.py`` paths are taken from (the config's folder).
    :param autoload: load third-party entry points; ``None`` reads
        ``PTYRAD_CORE_DISABLE_PLUGIN_AUTOLOAD``. ptyrad-core's own entry points always load.
    :param inline: plugin objects to register directly (tests).
    """
    pm = PtyradPluginManager()
    env_disabled = [
        n.strip() for n in os.environ.get("PTYRAD_CORE_DISABLED_PLUGINS", "").split(",") if n.strip()
    ]
    for name in [*disable, *env_disabled]:
        pm.set_blocked(name)
    if os.environ.get("PTYRAD_CORE_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda msg: print(msg, end="", file=sys.stderr))
        pm.enable_tracing()

    for name, plugin in core_observers().items():
        pm.register_plugin(
            plugin, name=name, source="core", distribution=DISTRIBUTION, version=_own_version()
        )

    if autoload is None:
        autoload = not os.environ.get("PTYRAD_CORE_DISABLE_PLUGIN_AUTOLOAD")
    _load_entry_points(pm, own_only=not autoload)

    for spec in modules:
        module, name, source = load_module_plugin(spec, base_dir)
        pm.known_names.add(name)
        if pm.is_blocked(name):
            continue
        if pm.get_plugin(name) is module:
            continue
        pm.register_plugin(module, name=name, source=source, location=getattr(module, "__file__", None))
    for obj in inline:
        pm.register_plugin(obj, name=getattr(obj, "__name__", None) or type(obj).__name__, source="inline")
    for name in sorted(set(disable) - pm.known_names):  # a typo would block nothing and say nothing
        close = difflib.get_close_matches(name, sorted(pm.known_names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; `ptyrad-core plugins` lists them"
        raise PluginError(f"plugins.disable: {name!r} names no plugin{hint}")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc} (hooks are named ptyrad_<verb>_<object>; see docs/hooks.md)") from exc
    pm.build_registries()
    return pm


def core_observers() -> dict[str, object]:
    """Fresh instances of the core observers (:data:`DEFAULT_PLUGINS`), by plugin name.

    Each module is imported by its name, at call time: the observers live in the layer above the
    kernel (:mod:`ptyrad_core.observers`), and the kernel never imports upward (tests/test_architecture.py).
    """
    plugins = {}
    for modname in DEFAULT_PLUGINS:
        module = importlib.import_module(modname)
        plugins[module.PLUGIN_NAME] = module.make_plugin()
    return plugins


def _own_version() -> str:
    from ptyrad_core.kernel import __version__

    return __version__
