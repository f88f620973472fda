"""Named component registries, one per plugin family.

Registration hooks receive a :class:`Registry` and call ``registry.add(name, cls)``. A config
selects components by name; :meth:`Registry.get` turns an unknown name into an error that
lists what is registered and suggests the closest spelling.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ptyrad_core.kernel.components import missing_method
from ptyrad_core.kernel.errors import ConfigError, PluginError, PluginLoadError


@dataclass(frozen=True)
class Entry:
    """One registered component: its class and the plugin that registered it."""

    name: str
    cls: type[Any]  # any class with a nested pydantic ``Options`` (checked by Registry.add)
    plugin: str


class Registry:
    """Components of one family (``loss``, ``constraint``, ``forward``, ``detector``, ``loader``)."""

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, Entry] = {}
        self._plugin = "<unknown>"
        self.load_errors: list[PluginLoadError] = []

    def add(self, name: str, cls: type) -> None:
        """Register ``cls`` under ``name``; it must have a pydantic ``Options`` class attribute."""
        if not isinstance(name, str) or not name.isidentifier():
            raise PluginError(f"plugin {self._plugin!r}: {self.family} name {name!r} must be an identifier")
        options = getattr(cls, "Options", None)
        if not (isinstance(options, type) and issubclass(options, BaseModel)):
            raise PluginError(
                f"plugin {self._plugin!r}: {self.family} {name!r} ({cls!r}) needs a nested pydantic "
                "'Options' model (class Options(BaseModel): ...)"
            )
        missing = missing_method(self.family, cls)
        if missing:
            raise PluginError(
                f"plugin {self._plugin!r}: {self.family} {name!r} ({cls.__qualname__}) "
                f"defines no {missing} method"
            )
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(
                f"{self.family} {name!r} is registered twice: by plugin {other!r} and by plugin "
                f"{self._plugin!r}; disable one of them (plugins.disable in the config)"
            )
        self._entries[name] = Entry(name, cls, self._plugin)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, where: str = "") -> Entry:
        """The entry for ``name``; an unknown name raises an error naming ``where`` (a YAML path)."""
        if name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        broken = "".join(f"\n  note: {e}" for e in self.load_errors)
        at = f"{where}: " if where else ""
        raise PluginError(
            f"{at}unknown {self.family} {name!r}{hint} "
            f"Registered: {', '.join(self.names()) or '(none)'}{broken}"
        )

    def resolve(
        self,
        name: str,
        options: dict,
        where: tuple = (),
        *,
        origin=None,
        name_key: str = "name",
        field: str = "options",
        sniff=None,
        path=None,
    ) -> tuple[Entry, BaseModel] | None:
        """The entry ``name`` selects and ``options`` validated by its ``Options``: the one path from a
        config's ``{name, options}`` at YAML path ``where`` (under the keys ``name_key`` and ``field``)
        to a component, for every family. ``"auto"``: ``sniff(path=path)`` (a ``ptyrad_sniff_*`` hook)
        names it, ``None`` when it names none. ``origin`` (the config's ``Origin``) gives messages their
        ``file:line``. Raises PluginError for an unknown name, ConfigError for bad options (one line each)."""
        if name == "auto" and sniff is not None:
            name = sniff(path=path)
            if name is None:
                return None
        entry = self.get(name, where=_dotted(tuple(where) + (name_key,)))
        try:
            return entry, entry.cls.Options.model_validate(options)
        except ValidationError as exc:
            loc = tuple(where) + (field,)
            msg = (
                origin.options_error(exc, entry.cls.Options, loc)
                if origin is not None
                else "\n".join(f"{_dotted(loc + tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
            )
            raise ConfigError(f"{msg} (options of {entry.cls.__module__}.{entry.cls.__name__})") from None


def _dotted(loc: tuple) -> str:
    """``('loss', 0, 'name')`` -> ``loss[0].name`` (as :func:`ptyrad_core.kernel.config.dotted`)."""
    return "".join(f"[{p}]" if isinstance(p, int) else f"{'.' if i else ''}{p}" for i, p in enumerate(loc))
