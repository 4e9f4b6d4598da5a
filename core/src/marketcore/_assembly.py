"""Profile + registries → the node's components, or every problem at once.

Factories are called here, so ``marketcore validate`` constructs everything a
run would (without connecting anywhere: factories must not do I/O) and a bad
profile never starts a half-configured node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from marketcore._plugins import Registration, Registries
from marketcore.components import Calculator, Coordinator, Cycle, Needs, Sink, Venue
from marketcore.pipeline import Pipeline, merge_needs
from marketcore.profile import (
    ComponentSection,
    PipelineSection,
    Problem,
    Profile,
    ProfileError,
    source_lookup,
    structure_options,
)

__all__ = ["Components", "assemble"]

_PROTOCOLS: dict[str, type] = {
    "venue": Venue, "coordinator": Coordinator, "sink": Sink, "calculator": Calculator,
}


@attrs.frozen
class Components:
    """Everything a node runs, built and checked."""

    venue: Venue
    coordinator: Coordinator
    sinks: tuple[Sink, ...]
    fast: Pipeline
    slow: Pipeline
    needs: Needs


class _Builder:
    def __init__(self, profile: Profile, registries: Registries) -> None:
        self.profile = profile
        self.registries = registries
        self.problems: list[Problem] = []
        self.source_of = source_lookup(profile.source, profile.env_paths)

    def problem(self, path: str, expected: str, found: str) -> None:
        self.problems.append(Problem(self.source_of(path), path, expected, found))

    def lookup(self, kind: str, name: str, path: str) -> Registration | None:
        table = self.registries.of(kind)
        found = table.get(name)
        if found is None:
            installed = ", ".join(sorted(table)) or "none installed"
            self.problem(path, f"an installed {kind} ({installed})", repr(name))
        return found

    def build(self, registration: Registration, options: Any, path: str) -> Any:
        """Validate ``options`` into the plugin's options class and call its factory."""
        if registration.options is not None:
            try:
                options = structure_options(options, registration.options,
                                            source=self.profile.source, path=path,
                                            env_paths=self.profile.env_paths)
            except ProfileError as error:
                self.problems.extend(error.problems)
                return None
        else:
            options = dict(options)
        try:
            component = registration.factory(options)
        except Exception as error:  # a plugin's own option checks
            self.problem(path, f"options that {registration.kind} {registration.name!r} accepts",
                         f"{type(error).__name__}: {error}")
            return None
        protocol = _PROTOCOLS[registration.kind]
        if not isinstance(component, protocol):
            self.problem(path, f"{registration.origin} to build a {protocol.__name__}",
                         f"{type(component).__name__}, which lacks part of that interface")
            return None
        return component

    def component(self, kind: str, section: ComponentSection, path: str) -> Any:
        registration = self.lookup(kind, section.use, f"{path}.use")
        return None if registration is None else self.build(registration, section.options, path)

    def calculators(self) -> dict[Cycle, list[Calculator]]:
        """The two pipelines' calculators, built once each, in profile order."""
        pipelines: dict[Cycle, PipelineSection] = {
            Cycle.FAST: self.profile.pipeline.fast, Cycle.SLOW: self.profile.pipeline.slow,
        }
        tables = self.profile.calculators
        table_names = set(tables)
        for name in sorted(table_names - set(self.registries.calculators)):
            self.lookup("calculator", name, f"calculators.{name}")
        built: dict[str, Calculator | None] = {}

        def make(name: str) -> Calculator | None:
            if name not in built:
                registration = self.registries.calculators[name]
                built[name] = self.build(registration, tables.get(name, {}), f"calculators.{name}")
            return built[name]

        chosen: dict[Cycle, list[Calculator]] = {Cycle.FAST: [], Cycle.SLOW: []}
        placed: dict[str, Cycle] = {}
        for cycle, section in pipelines.items():
            if section.calculators is None:
                continue
            for index, name in enumerate(section.calculators):
                path = f"pipeline.{cycle}.calculators[{index}]"
                if self.lookup("calculator", name, path) is None:
                    continue
                if name in placed:
                    where = "this list" if placed[name] is cycle else f"pipeline.{placed[name]}"
                    self.problem(path, f"each calculator listed once (it is already in {where})",
                                 repr(name))
                    continue
                placed[name] = cycle
                calculator = make(name)
                if calculator is not None:
                    chosen[cycle].append(calculator)
        for cycle, section in pipelines.items():
            if section.calculators is not None:
                continue
            for name in sorted(self.registries.calculators):  # all, in their default cycle
                if name in placed:
                    continue
                calculator = make(name)
                if calculator is not None and calculator.cycle == cycle:
                    placed[name] = cycle
                    chosen[cycle].append(calculator)
        return chosen


def assemble(profile: Profile, registries: Registries, *,
             sink_override: Callable[[], tuple[Sink, ...]] | None = None,
             enforce_budgets: bool = True) -> Components:
    """Build every component the profile names; raise :class:`ProfileError` on problems.

    ``sink_override`` replaces the profile's sinks (``marketcore replay
    --out``); ``enforce_budgets=False`` turns off time budgets, which replay
    needs to stay deterministic.
    """
    builder = _Builder(profile, registries)
    venue = builder.component("venue", profile.venue, "venue")
    coordinator = builder.component("coordinator", profile.coordinator, "coordinator")
    if sink_override is None:
        sinks = tuple(builder.component("sink", section, f"sink[{i}]")
                      for i, section in enumerate(profile.sink))
    else:
        sinks = sink_override()
    calculators = builder.calculators()
    if builder.problems:
        raise ProfileError(builder.problems)

    def pipeline(cycle: Cycle, section: PipelineSection) -> Pipeline:
        budget = section.budget_ms if section.budget_ms is not None else section.period_ms / 2
        return Pipeline(cycle, calculators[cycle], budget_ms=budget if enforce_budgets else None)

    return Components(
        venue=venue, coordinator=coordinator, sinks=sinks,
        fast=pipeline(Cycle.FAST, profile.pipeline.fast),
        slow=pipeline(Cycle.SLOW, profile.pipeline.slow),
        needs=merge_needs(calculators[Cycle.FAST] + calculators[Cycle.SLOW]),
    )
