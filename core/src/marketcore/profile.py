"""The profile: one TOML file that assembles plugins into a running node.

Loading happens in two steps, and both report every problem precisely (file,
key path, what was expected, what was found):

1. :func:`load_profile` reads the TOML, applies ``MARKETCORE_<SECTION>__<KEY>``
   environment overrides and structures the result into the attrs classes
   below with cattrs. Core keys are checked here; unknown keys are errors.
2. :func:`resolve_profile` checks every component name against the installed
   plugins and validates each component's own options table into the options
   class the plugin registered.

A profile that fails either step never starts a node.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ForbiddenExtraKeysError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

__all__ = [
    "DEFAULT_PROFILE_NAME",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ComponentSection",
    "LogSection",
    "MetricsSection",
    "NodeSection",
    "PipelineSection",
    "PipelinesSection",
    "Problem",
    "Profile",
    "ProfileError",
    "StateSection",
    "env_overrides",
    "load_default_profile",
    "load_profile",
    "structure_options",
]

ENV_PREFIX = "MARKETCORE_"
_HIDDEN = frozenset({"source", "env_paths"})
DEFAULT_PROFILE_NAME = "<embedded default profile>"
DEFAULT_FAST_PERIOD_MS = 250
DEFAULT_SLOW_PERIOD_MS = 2000
FAST_PERIOD_RANGE = (100, 1000)
SLOW_PERIOD_RANGE = (500, 60_000)
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


# ---------------------------------------------------------------------------
# Problems and errors
# ---------------------------------------------------------------------------


@attrs.frozen
class Problem:
    """One thing wrong with a profile."""

    source: str
    """The file, or ``environment MARKETCORE_…`` when an override caused it."""
    path: str
    """The key path, e.g. ``pipeline.fast.period_ms`` or ``sink[1].use``."""
    expected: str
    found: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return f"{where}: expected {self.expected}, found {self.found}"


class ProfileError(Exception):
    """The profile is invalid; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Invalid(ValueError):
    """Raised by validators and strict hooks; carries what was expected."""

    def __init__(self, expected: str, value: Any, attribute: str | None = None) -> None:
        self.expected = expected
        self.value = value
        self.attribute = attribute
        super().__init__(f"expected {expected}, found {value!r}")


def _in_range(low: int, high: int) -> Callable[[Any, attrs.Attribute, int], None]:
    def check(_instance: Any, attribute: attrs.Attribute, value: int) -> None:
        if not low <= value <= high:
            raise _Invalid(f"an integer from {low} to {high}", value, attribute.name)

    return check


def _positive(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value <= 0:
        raise _Invalid("a number > 0", value, attribute.name)


def _choice(choices: tuple[str, ...]) -> Callable[[Any, attrs.Attribute, str], None]:
    def check(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
        if value not in choices:
            raise _Invalid("one of " + ", ".join(repr(c) for c in choices), value,
                           attribute.name)

    return check


def _bind_address(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value == "":
        return
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _Invalid('"host:port" (or "" to disable)', value, attribute.name)


def _symbols(_instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise _Invalid("at least one symbol", list(value), attribute.name)
    for symbol in value:
        if not symbol or not symbol.isalnum() or len(symbol) > 32:
            raise _Invalid("symbols of 1–32 letters and digits", symbol, attribute.name)
    if len(set(value)) != len(value):
        raise _Invalid("each symbol once", list(value), attribute.name)


def _upper_symbols(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(s.strip().upper() for s in value)


# ---------------------------------------------------------------------------
# The profile model
# ---------------------------------------------------------------------------


def default_node_id() -> str:
    """``hostname-pid``: unique per process on a host, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


@attrs.frozen
class NodeSection:
    """``[node]``: who this node is and what the fleet serves."""

    symbols: tuple[str, ...] = attrs.field(converter=_upper_symbols, validator=_symbols)
    id: str = ""
    """Unique in the fleet; ``""``: ``hostname-pid`` live, ``replay`` in a replay."""


@attrs.frozen
class ComponentSection:
    """A table that selects one plugin component: ``use`` plus its own options."""

    use: str
    options: Mapping[str, Any] = attrs.field(factory=dict)
    name: str = ""
    """For sinks: a distinct name when two sinks share a ``use``."""


@attrs.frozen
class PipelineSection:
    """``[pipeline.fast]`` / ``[pipeline.slow]``."""

    period_ms: int | None = None
    """``None`` (key absent): 250 for the fast cycle, 2000 for the slow one."""
    calculators: tuple[str, ...] | None = None
    """``None`` (key absent): every installed calculator whose default cycle is this one."""
    budget_ms: float | None = attrs.field(default=None)
    """Per-calculator time budget per symbol; ``None``: half the period."""


def _fast_default() -> PipelineSection:
    return PipelineSection(period_ms=DEFAULT_FAST_PERIOD_MS)


def _slow_default() -> PipelineSection:
    return PipelineSection(period_ms=DEFAULT_SLOW_PERIOD_MS)


@attrs.frozen
class PipelinesSection:
    """``[pipeline]``: the fast and the slow cycle."""

    fast: PipelineSection = attrs.field(factory=_fast_default)
    slow: PipelineSection = attrs.field(factory=_slow_default)


@attrs.frozen
class StateSection:
    """``[state]``: bounds of each SymbolState."""

    max_trades: int = attrs.field(default=65_536, validator=_in_range(16, 10_000_000))
    level_sample_depth: int = attrs.field(default=20, validator=_in_range(1, 1000))


@attrs.frozen
class MetricsSection:
    """``[metrics]``: where Prometheus metrics are served (``""``: nowhere)."""

    bind: str = attrs.field(default="", validator=_bind_address)


@attrs.frozen
class LogSection:
    """``[log]``: how the node logs (to stderr). ``--log-format`` / ``--log-level`` win."""

    format: str = attrs.field(default="text", validator=_choice(LOG_FORMATS))
    """``text`` for people, ``json`` (one object per line) for log pipelines."""
    level: str = attrs.field(default="warning", converter=str.lower,
                             validator=_choice(LOG_LEVELS))
    burst: int = attrs.field(default=5, validator=_in_range(1, 10_000))
    """Records of one kind (logger, message template, ``kind``) let through per interval."""
    interval_s: float = attrs.field(default=10.0, validator=_positive)
    """The rate limit's interval; what it holds back is counted and reported."""


@attrs.frozen
class Profile:
    """A validated profile. ``source`` names the file it came from."""

    node: NodeSection
    venue: ComponentSection
    coordinator: ComponentSection = attrs.field(factory=lambda: ComponentSection("local"))
    pipeline: PipelinesSection = attrs.field(factory=PipelinesSection)
    sink: tuple[ComponentSection, ...] = (ComponentSection("stdout"),)
    calculators: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    """Options tables of calculators, ``[calculators.<name>]``."""
    state: StateSection = attrs.field(factory=StateSection)
    metrics: MetricsSection = attrs.field(factory=MetricsSection)
    log: LogSection = attrs.field(factory=LogSection)
    source: str = ""
    """The file it came from (not a TOML key)."""
    env_paths: Mapping[str, str] = attrs.field(factory=dict, eq=False, repr=False)
    """Key paths set by environment variables, ``{path: variable}`` (not a TOML key)."""

    def to_dict(self) -> dict[str, Any]:
        """The profile as TOML-ready data (``marketcore init`` writes this)."""
        return unstructure_profile(self)


# ---------------------------------------------------------------------------
# A strict converter: no silent coercion of 1 to "1" or of true to 1
# ---------------------------------------------------------------------------

T = TypeVar("T")


def _strict_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("an integer", value)
    return value


def _strict_float(value: Any, _type: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid("a number", value)
    return float(value)


def _strict_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise _Invalid("a string", value)
    return value


def _strict_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("true or false", value)
    return value


def _str_tuple(value: Any, _type: type) -> tuple[str, ...]:
    """A list of strings; a comma-separated string is accepted (handy in env vars)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if not isinstance(value, list | tuple):
        raise _Invalid("a list of strings", value)
    for item in value:
        if not isinstance(item, str):
            raise _Invalid("a list of strings", value)
    return tuple(value)


def _table(value: Any, _type: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid("a table", value)
    return value


def _component(value: Any, _type: type) -> ComponentSection:
    if not isinstance(value, dict):
        raise _Invalid('a table with use = "<name>"', value)
    options = dict(value)
    use = options.pop("use", None)
    if use is None:
        raise _Invalid('a key use = "<name>"', "none", "use")
    if not isinstance(use, str) or not use:
        raise _Invalid("a component name", use, "use")
    name = options.pop("name", use)
    if not isinstance(name, str):
        raise _Invalid("a string", name, "name")
    return ComponentSection(use=use, options=options, name=name)


def _components(value: Any, _type: type) -> tuple[ComponentSection, ...]:
    if isinstance(value, dict):  # a single [sink] table instead of [[sink]]
        value = [value]
    if not isinstance(value, list):
        raise _Invalid("an array of tables [[sink]]", value)
    return tuple(_component_at(item, index) for index, item in enumerate(value))


class _AtIndex(ValueError):
    def __init__(self, index: int, error: _Invalid) -> None:
        self.index, self.error = index, error
        super().__init__(str(error))


def _component_at(item: Any, index: int) -> ComponentSection:
    try:
        return _component(item, ComponentSection)
    except _Invalid as error:
        raise _AtIndex(index, error) from None


def _calculator_tables(value: Any, _type: type) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise _Invalid("a table of [calculators.<name>] tables", value)
    for name, table in value.items():
        if not isinstance(table, dict):
            raise _Invalid(f"a table [calculators.{name}]", table, name)
    return value


def make_converter() -> cattrs.Converter:
    """The strict converter used for profiles and for plugins' options classes."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    for exact_type, hook in (
        (tuple[str, ...], _str_tuple),
        (Mapping[str, Any], _table),
        (dict[str, Any], _table),
        (tuple[ComponentSection, ...], _components),
        (Mapping[str, Mapping[str, Any]], _calculator_tables),
    ):
        converter.register_structure_hook_func(lambda t, e=exact_type: t == e, hook)
    converter.register_structure_hook(ComponentSection, _component)
    converter.register_unstructure_hook(ComponentSection, _unstructure_component)
    # ``source`` and ``env_paths`` describe where a profile came from; they are
    # never read from TOML (an extra-key error) nor written back.
    hidden = {"source": override(omit=True), "env_paths": override(omit=True)}
    converter.register_structure_hook(Profile, make_dict_structure_fn(
        Profile, converter, _cattrs_forbid_extra_keys=True, **hidden))
    converter.register_unstructure_hook(Profile, make_dict_unstructure_fn(
        Profile, converter, **hidden))
    return converter


def _unstructure_component(section: ComponentSection) -> dict[str, Any]:
    data: dict[str, Any] = {"use": section.use}
    if section.name and section.name != section.use:
        data["name"] = section.name
    data.update(section.options)
    return data


_CONVERTER = make_converter()


def unstructure_profile(profile: Profile) -> dict[str, Any]:
    return _drop_none(_CONVERTER.unstructure(profile))


def _drop_none(value: Any) -> Any:
    """TOML has no null: leave out keys whose value is None."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Turning cattrs' exception trees into Problems
# ---------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return "nothing" if value == "none" else repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return f"[{', '.join(_describe(v) for v in value)}]"
    return repr(value)


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def _problems_from(error: BaseException, path: str,
                   source_of: Callable[[str], str]) -> list[Problem]:
    """Flatten a cattrs error tree into one Problem per leaf."""
    for note in getattr(error, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            path = _join(path, note.name)
        elif isinstance(note, IterableValidationNote):
            path = _join(path, note.index)
    if isinstance(error, cattrs.BaseValidationError):
        found: list[Problem] = []
        for sub in error.exceptions:
            found.extend(_problems_from(sub, path, source_of))
        return found
    if isinstance(error, ForbiddenExtraKeysError):
        known = ", ".join(a.name for a in attrs.fields(error.cl) if a.name not in _HIDDEN)
        return [
            Problem(source_of(_join(path, key)), _join(path, key),
                    f"one of the keys {known}", f"unknown key {key!r}")
            for key in sorted(error.extra_fields)
        ]
    if isinstance(error, _AtIndex):
        path, error = _join(path, error.index), error.error
    if isinstance(error, _Invalid):
        if error.attribute:
            path = _join(path, error.attribute)
        return [Problem(source_of(path), path, error.expected, _describe(error.value))]
    if isinstance(error, KeyError):  # a required key without default
        key = str(error.args[0]) if error.args else "?"
        key_path = path if path.rsplit(".", 1)[-1] == key else _join(path, key)
        return [Problem(source_of(key_path), key_path, "this key to be set", "nothing")]
    if len(error.args) == 4 and isinstance(error.args[1], attrs.Attribute):
        # attrs' own validators (in_, instance_of, …): (message, attribute, expected, value)
        _, attribute, expected, value = error.args
        path = _join(path, attribute.name)
        if isinstance(expected, list | tuple | set | frozenset | dict):
            expected = "one of " + ", ".join(repr(e) for e in expected)
        elif isinstance(expected, type):
            expected = f"a {expected.__name__}"
        return [Problem(source_of(path), path, str(expected), _describe(value))]
    return [Problem(source_of(path), path, "a valid value", str(error))]


def structure_options(
    data: Mapping[str, Any], cls: type[T], *, source: str, path: str,
    env_paths: Mapping[str, str] | None = None,
) -> T:
    """Validate a component's options table into its attrs class ``cls``.

    Raises :class:`ProfileError` naming ``source`` and ``path.<key>``.
    """
    source_of = source_lookup(source, env_paths or {})
    try:
        return _CONVERTER.structure(dict(data), cls)
    except Exception as error:  # cattrs raises exception groups of anything
        raise ProfileError(_problems_from(error, path, source_of)) from None


def source_lookup(source: str, env_paths: Mapping[str, str]) -> Callable[[str], str]:
    """``source_of(key_path)``: the environment variable that set the key, else ``source``."""

    def source_of(path: str) -> str:
        for env_path, variable in env_paths.items():
            if path == env_path or path.startswith((env_path + ".", env_path + "[")):
                return f"environment {variable}"
        return source

    return source_of


# ---------------------------------------------------------------------------
# Environment overrides
# ---------------------------------------------------------------------------


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str | int, ...], tuple[str, Any]]:
    """``MARKETCORE_<SECTION>__<KEY>`` variables as ``{key path: (variable, value)}``.

    Only variables with ``__`` in them are overrides (``MARKETCORE_LOAD_PLUGINS``
    is not). Values are read as TOML values when they parse (``250``, ``true``,
    ``["A", "B"]``) and as plain strings otherwise; a numeric path part indexes
    an array of tables (``MARKETCORE_SINK__0__BIND``).
    """
    found: dict[tuple[str | int, ...], tuple[str, Any]] = {}
    for variable, raw in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or "__" not in variable:
            continue
        parts = variable[len(ENV_PREFIX) :].lower().split("__")
        path = tuple(int(p) if p.isdigit() else p for p in parts)
        found[path] = (variable, _parse_env_value(raw))
    return found


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _path_text(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text = _join(text, part)
    return text


def _apply_overrides(
    data: dict[str, Any], overrides: Mapping[tuple[str | int, ...], tuple[str, Any]]
) -> tuple[dict[str, str], list[Problem]]:
    env_paths: dict[str, str] = {}
    problems: list[Problem] = []
    for path, (variable, value) in overrides.items():
        target: Any = data
        try:
            for depth, part in enumerate(path[:-1]):
                nxt = path[depth + 1]
                if isinstance(part, int):
                    if not isinstance(target, list) or part >= len(target):
                        raise LookupError(f"an existing entry [{part}]")
                    target = target[part]
                else:
                    if not isinstance(target, dict):
                        raise LookupError("a table")
                    default: Any = [] if isinstance(nxt, int) else {}
                    target = target.setdefault(part, default)
            last = path[-1]
            if isinstance(last, int) or not isinstance(target, dict):
                raise LookupError("a key inside a table")
            target[last] = value
        except LookupError as error:
            problems.append(Problem(f"environment {variable}", _path_text(path),
                                    f"a path to {error.args[0]}", repr(value)))
            continue
        env_paths[_path_text(path)] = variable
    return env_paths, problems


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_profile(path: str | Path, environ: Mapping[str, str] | None = None) -> Profile:
    """Read, override from the environment and validate the core keys of a profile.

    Component names and options are checked by :func:`resolve_profile`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        found = error.strerror or str(error)
        raise ProfileError([Problem(str(path), "", "a readable TOML file", found)]) from None
    return parse_profile(text, str(path), environ)


def load_default_profile(environ: Mapping[str, str] | None = None, *,
                         text: str | None = None) -> Profile:
    """The embedded default profile: ``marketcore run`` without a file.

    ``text`` is what the ``marketcore_default_profile`` hook chose; without it,
    the core's own (the synthetic venue).
    """
    if text is None:
        text = resources.files("marketcore").joinpath("default_profile.toml").read_text("utf-8")
    return parse_profile(text, DEFAULT_PROFILE_NAME, environ)


def parse_profile(text: str, source: str, environ: Mapping[str, str] | None = None) -> Profile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError([Problem(source, "", "valid TOML", str(error))]) from None
    env_paths, problems = _apply_overrides(
        data, env_overrides(os.environ if environ is None else environ)
    )
    if problems:
        raise ProfileError(problems)
    source_of = source_lookup(source, env_paths)
    for required, expected in (("node", "a [node] table with symbols = [...]"),
                               ("venue", 'a [venue] table with use = "<venue>"')):
        if required not in data:
            problems.append(Problem(source, required, expected, "no such section"))
    if problems:
        raise ProfileError(problems)
    try:
        profile = _CONVERTER.structure(data, Profile)
    except Exception as error:
        raise ProfileError(_problems_from(error, "", source_of)) from None
    profile = attrs.evolve(profile, pipeline=_with_default_periods(profile.pipeline))
    problems = _check_pipelines(profile, source_of) + _check_sink_names(profile, source_of)
    if problems:
        raise ProfileError(problems)
    return attrs.evolve(profile, source=source, env_paths=env_paths)


def _with_default_periods(pipeline: PipelinesSection) -> PipelinesSection:
    fast, slow = pipeline.fast, pipeline.slow
    if fast.period_ms is None:
        fast = attrs.evolve(fast, period_ms=DEFAULT_FAST_PERIOD_MS)
    if slow.period_ms is None:
        slow = attrs.evolve(slow, period_ms=DEFAULT_SLOW_PERIOD_MS)
    return PipelinesSection(fast=fast, slow=slow)


def _check_pipelines(profile: Profile, source_of: Callable[[str], str]) -> list[Problem]:
    problems = []
    for cycle, (low, high) in (("fast", FAST_PERIOD_RANGE), ("slow", SLOW_PERIOD_RANGE)):
        section: PipelineSection = getattr(profile.pipeline, cycle)
        path = f"pipeline.{cycle}.period_ms"
        if not low <= section.period_ms <= high:
            problems.append(Problem(source_of(path), path, f"milliseconds from {low} to {high}",
                                    str(section.period_ms)))
        if section.budget_ms is not None and not 0 < section.budget_ms <= section.period_ms:
            path = f"pipeline.{cycle}.budget_ms"
            problems.append(Problem(source_of(path), path,
                                    f"milliseconds > 0 and <= period_ms ({section.period_ms})",
                                    str(section.budget_ms)))
    if profile.pipeline.slow.period_ms < profile.pipeline.fast.period_ms:
        path = "pipeline.slow.period_ms"
        problems.append(Problem(source_of(path), path,
                                f"at least the fast period ({profile.pipeline.fast.period_ms})",
                                str(profile.pipeline.slow.period_ms)))
    return problems


def _check_sink_names(profile: Profile, source_of: Callable[[str], str]) -> list[Problem]:
    problems = []
    first_index: dict[str, int] = {}
    for index, sink in enumerate(profile.sink):
        if sink.name in first_index:
            path = f"sink[{index}]"
            problems.append(Problem(
                source_of(path), path,
                f"a sink name used once (sink[{first_index[sink.name]}] is already "
                f"{sink.name!r}; add name = \"...\" to tell them apart)",
                f"a second {sink.name!r}"))
        else:
            first_index[sink.name] = index
    return problems
