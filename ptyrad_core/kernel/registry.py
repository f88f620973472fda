"""Named component registries, one per plugin family.

Registration hooks receive a :class:`Registry` and call ``registry.add(name, cls)``. A config
selects components by name; :meth:`Registry.get` turns an unknown name into an error that
lists what is registered and suggests the closest spelling.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from ptyrad_core.kernel.components import missing_method
from ptyrad_core.kernel.errors import ConfigError, PluginError, PluginLoadError


@dataclass(frozen=True)
class Entry:
    """One registered component: its class and the plugin that registered it."""

    name: str
    cls: type
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
            f"{at}unknown {self.family} {name!r}{hint} Registered: {', '.join(self.names()) or '(none)'}{broken}"
        )

    def resolve(self, name: str, options: dict, where: tuple = (), *, origin=None, name_key: str = "name",
                field: str = "options", sniff=None, path=None) -> tuple[Entry, BaseModel] | None:
        """The entry that ``name`` selects and ``options`` validated by its ``Options`` model: the
        one path from a config's ``{name, options}`` to a component, for every family.

        :param name: a registered name, or ``"auto"`` (loaders and result readers): ``sniff(path=path)``
            (the family's ``ptyrad_sniff_*`` hook) names it; ``None`` is returned when it names none
            (the caller reports that the file is not recognised, where it reads the file).
        :param where: the YAML key path of the component's mapping, e.g. ``("loss", 0)``, ``("data",)``.
        :param origin: the config's :class:`~ptyrad_core.kernel.config.Origin`, for ``file:line`` in messages.
        :param name_key: the key that holds the name there (``name``, ``loader``, ``reader``).
        :param field: the key that holds the options there (``options``, ``reader_options``).
        :raises PluginError: an unknown name (naming ``where.name_key`` and the closest spelling).
        :raises ConfigError: options the component's ``Options`` reject, one line per problem
            (``file:line: where.field.key: message``).
        """
        from ptyrad_core.kernel.config import Origin, dotted, format_validation_error

        if name == "auto" and sniff is not None:
            name = sniff(path=path)
            if name is None:
                return None
        entry = self.get(name, where=dotted(tuple(where) + (name_key,)))
        try:
            return entry, entry.cls.Options.model_validate(options)
        except ValidationError as exc:
            origin = origin if origin is not None else Origin()
            msg = format_validation_error(exc, entry.cls.Options, origin.source, origin.lines, prefix=tuple(where) + (field,))
            raise ConfigError(f"{msg}\n  (options of {entry.cls.__module__}.{entry.cls.__name__})") from None
