"""The plugin manager and the component registries built from it.

Nothing here runs at import time: :func:`get_plugin_manager` builds a fresh
manager each time it is called (tests build one per test).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from functools import cached_property
from importlib import metadata
from typing import Any

import attrs
import pluggy

from marketcore import hookspecs

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginInfo",
    "PluginManager",
    "Registration",
    "Registries",
    "get_plugin_manager",
]

ENTRY_POINT_GROUP = "marketcore"
BUILTIN_DISTRIBUTION = "marketcore"

DEFAULT_PLUGINS: tuple[str, ...] = (
    "marketcore._builtins.synthetic",
    "marketcore._builtins.local",
    "marketcore._builtins.stdout",
    "marketcore._builtins.jsonl",
    "marketcore._builtins.http",
    "marketcore._builtins.read_commands",
    "marketcore._builtins.health",
    "marketcore._builtins.scaffold",
)
"""Modules of the built-in plugins, registered exactly like external ones."""

COMPONENT_KINDS = ("venue", "calculator", "coordinator", "sink")


class PluginError(Exception):
    """A plugin could not be loaded, or two plugins claim the same name."""


@attrs.frozen
class Registration:
    """One registered component: what a profile's ``use = "<name>"`` resolves to."""

    kind: str
    name: str
    factory: Callable[[Any], Any]
    options: type | None
    plugin: str
    distribution: str
    version: str

    @property
    def origin(self) -> str:
        """``distribution version (plugin name)``, for messages."""
        return f"{self.distribution} {self.version} (plugin {self.plugin!r})"


@attrs.frozen
class Registries:
    """Every registered component, by kind and name."""

    venues: Mapping[str, Registration]
    calculators: Mapping[str, Registration]
    coordinators: Mapping[str, Registration]
    sinks: Mapping[str, Registration]

    def of(self, kind: str) -> Mapping[str, Registration]:
        return getattr(self, kind + "s")


@attrs.frozen
class PluginInfo:
    """What ``marketcore plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    registers: Mapping[str, tuple[str, ...]]
    hooks: tuple[str, ...]


def _split_names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus marketcore's registries and a typed call facade."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self._distributions: dict[str, tuple[str, str]] = {}

    # -- loading --------------------------------------------------------------

    def register_builtin(self, module_name: str) -> None:
        module = importlib.import_module(module_name)
        name = "builtin." + module_name.rsplit(".", 1)[-1]
        if self.is_blocked(name):
            return
        self.register(module, name=name)
        self._distributions[name] = (BUILTIN_DISTRIBUTION, _version_of(BUILTIN_DISTRIBUTION))

    def load_entry_points(self, allow: set[str] | None) -> None:
        """Load the ``marketcore`` entry points, honouring the allow list."""
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist_name = entry_point.dist.name if entry_point.dist else "?"
            if allow is not None and entry_point.name not in allow and dist_name not in allow:
                continue
            if self.is_blocked(entry_point.name) or self.has_plugin(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as error:
                raise PluginError(
                    f"plugin {entry_point.name!r} from {dist_name} failed to load: {error}"
                ) from error
            self.register(plugin, name=entry_point.name)
            version = entry_point.dist.version if entry_point.dist else "?"
            self._distributions[entry_point.name] = (dist_name, version)

    def register_test_plugin(self, plugin: object, name: str, distribution: str = "test") -> None:
        """Register an in-process plugin object (tests, notebooks) under ``name``."""
        self.register(plugin, name=name)
        self._distributions[name] = (distribution, "0")
        self.__dict__.pop("registries", None)

    def distribution_of(self, plugin_name: str) -> tuple[str, str]:
        return self._distributions.get(plugin_name, ("?", "?"))

    # -- registries -----------------------------------------------------------

    @cached_property
    def registries(self) -> Registries:
        """Collect every component, calling each plugin's registration hooks once.

        Each implementation is called on its own so a registration is credited
        to the plugin that made it, and a clash can name both distributions.
        """
        found: dict[str, dict[str, Registration]] = {kind: {} for kind in COMPONENT_KINDS}
        for kind in COMPONENT_KINDS:
            caller = getattr(self.hook, f"marketcore_register_{kind}s")
            for impl in caller.get_hookimpls():  # registration order, oldest first
                register = self._registrar(kind, impl.plugin_name, found[kind])
                try:
                    impl.function(**({"register": register} if "register" in impl.argnames else {}))
                except PluginError:
                    raise
                except Exception as error:
                    dist, _ = self.distribution_of(impl.plugin_name)
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} ({dist}) failed in "
                        f"marketcore_register_{kind}s: {error}"
                    ) from error
        return Registries(
            venues=found["venue"], calculators=found["calculator"],
            coordinators=found["coordinator"], sinks=found["sink"],
        )

    def _registrar(
        self, kind: str, plugin_name: str, table: dict[str, Registration]
    ) -> Callable[..., None]:
        distribution, version = self.distribution_of(plugin_name)

        def register(name: str, factory: Callable[[Any], Any], *,
                     options: type | None = None) -> None:
            if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
                raise PluginError(
                    f"plugin {plugin_name!r} ({distribution}) registered a {kind} with an "
                    f"invalid name {name!r}: use letters, digits, '_' and '-'"
                )
            if not callable(factory):
                raise PluginError(f"plugin {plugin_name!r} registered {kind} {name!r} "
                                  f"with a factory that is not callable")
            if options is not None and not attrs.has(options):
                raise PluginError(f"plugin {plugin_name!r} registered {kind} {name!r} with "
                                  f"options={options!r}, which is not an attrs class")
            new = Registration(kind, name, factory, options, plugin_name, distribution, version)
            old = table.get(name)
            if old is not None:
                raise PluginError(
                    f"{kind} {name!r} is registered twice: by {old.origin} and by {new.origin}; "
                    f"uninstall one, or block one with MARKETCORE_DISABLE_PLUGINS"
                )
            table[name] = new

        return register

    # -- description ----------------------------------------------------------

    def describe(self) -> list[PluginInfo]:
        """Every loaded plugin with its distribution and what it registers."""
        registries = self.registries
        infos = []
        for name, plugin in sorted(self.list_name_plugin(), key=lambda item: str(item[0])):
            if plugin is None or name is None:
                continue
            registers = {
                kind: tuple(sorted(r.name for r in registries.of(kind).values()
                                   if r.plugin == name))
                for kind in COMPONENT_KINDS
            }
            hooks = tuple(sorted(
                caller.name for caller in self.get_hookcallers(plugin) or ()
                if not caller.name.startswith("marketcore_register_")
            ))
            distribution, version = self.distribution_of(name)
            infos.append(PluginInfo(name, distribution, version,
                                    {k: v for k, v in registers.items() if v}, hooks))
        return infos

    # -- lifecycle facade -----------------------------------------------------

    @cached_property
    def hooks(self) -> Hooks:
        return Hooks(self)


class Hooks:
    """Typed, keyword-only calls of the lifecycle hooks."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._hook = pm.hook

    def default_profile(self) -> str | None:
        return self._hook.marketcore_default_profile()

    def register_commands(self, cli: Any) -> None:
        self._hook.marketcore_register_commands(cli=cli)

    def startup(self, node: Any) -> None:
        self._hook.marketcore_startup(node=node)

    def shutdown(self, node: Any) -> None:
        self._hook.marketcore_shutdown(node=node)

    def symbol_acquired(self, symbol: str, token: Any) -> None:
        self._hook.marketcore_symbol_acquired(symbol=symbol, token=token)

    def symbol_released(self, symbol: str, reason: str) -> None:
        self._hook.marketcore_symbol_released(symbol=symbol, reason=reason)


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def get_plugin_manager(
    *, environ: Mapping[str, str] | None = None, load_entry_points: bool = True,
    builtins: tuple[str, ...] = DEFAULT_PLUGINS,
) -> PluginManager:
    """Build a plugin manager: built-ins, then installed plugins, then checks.

    * ``MARKETCORE_LOAD_PLUGINS=a,b`` loads only those installed plugins (entry
      point or distribution names; empty: none). Built-ins always load.
    * ``MARKETCORE_DISABLE_PLUGINS=a,b`` blocks plugins by name, built-ins too
      (``builtin.stdout``).

    Raises :class:`PluginError` when a plugin fails to load, implements a hook
    that does not exist, or two plugins register the same component name.
    """
    environ = os.environ if environ is None else environ
    pm = PluginManager()
    for name in _split_names(environ.get("MARKETCORE_DISABLE_PLUGINS")) or ():
        pm.set_blocked(name)
    for module_name in builtins:
        pm.register_builtin(module_name)
    if load_entry_points:
        pm.load_entry_points(_split_names(environ.get("MARKETCORE_LOAD_PLUGINS")))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as error:
        raise PluginError(str(error)) from error
    pm.registries  # noqa: B018 -- build now, so a name clash fails here, not mid-run
    return pm


def iter_registrations(registries: Registries) -> Iterator[Registration]:
    for kind in COMPONENT_KINDS:
        yield from registries.of(kind).values()
