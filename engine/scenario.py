"""Scenario files for ``journeys simulate`` (journey-dsl.md §7): shape and loading."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.durations import parse_duration
from engine.errors import Problem, SpecError
from engine.loader import _clean_loc, _message, read_source
from engine.yamlsrc import load_yaml

Offset = Annotated[timedelta, BeforeValidator(lambda v: parse_duration(v, allow_zero=True))]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioCustomer(BaseModel):
    """A scripted customer: ``id`` plus any profile fields."""

    model_config = ConfigDict(extra="allow", frozen=True)
    id: str = Field(min_length=1)


class ScenarioEvent(_Model):
    """An event at an offset from ``start``."""

    at: Offset
    customer: str = Field(min_length=1)
    name: str = Field(min_length=1)
    properties: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


ACTION_VERBS = ("pause", "resume", "activate", "archive", "exit")


class ScenarioAction(_Model):
    """An operator action at an offset: ``{at, pause: JOURNEY, on_resume, stale_after}`` and so on."""

    at: Offset
    pause: str | None = None
    resume: str | None = None
    activate: str | None = None
    archive: str | None = None
    exit: str | None = None
    customer: str | None = None
    on_resume: Literal["send_late", "skip_stale"] = "send_late"
    stale_after: Annotated[timedelta, BeforeValidator(parse_duration)] | None = None

    @model_validator(mode="after")
    def _one_verb(self) -> ScenarioAction:
        verbs = [v for v in ACTION_VERBS if getattr(self, v) is not None]
        if len(verbs) != 1:
            raise ValueError(f"an action has exactly one of {', '.join(ACTION_VERBS)}")
        if verbs[0] == "exit" and not self.customer:
            raise ValueError("an exit action names the customer: {at, exit: JOURNEY, customer: ID}")
        if verbs[0] == "pause" and self.on_resume == "skip_stale" and self.stale_after is None:
            raise ValueError("on_resume: skip_stale needs stale_after")
        return self

    @property
    def verb(self) -> str:
        """Which action this is."""
        return next(v for v in ACTION_VERBS if getattr(self, v) is not None)

    @property
    def journey(self) -> str:
        """The journey it acts on."""
        return str(getattr(self, self.verb))


class Scenario(_Model):
    """A whole scenario file."""

    journey: str | list[str]
    start: datetime
    customers: list[ScenarioCustomer] = Field(default_factory=list)
    events: list[ScenarioEvent] = Field(default_factory=list)
    actions: list[ScenarioAction] = Field(default_factory=list)
    until: Offset

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a UTC offset, e.g. 2026-11-23T10:00:00+08:00")
        return value

    @property
    def journey_paths(self) -> list[str]:
        """The journey file(s), as written."""
        return [self.journey] if isinstance(self.journey, str) else list(self.journey)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        SpecError: Invalid YAML or shape, located by line.
    """
    source = str(path)
    data, index = load_yaml(read_source(path), source=source)
    if not isinstance(data, dict):
        raise SpecError(source, [Problem("", 1, "a scenario file is a mapping (journey:, start:, events: ...)")])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise SpecError(source, [index.problem(_clean_loc(e["loc"]), _message(e)) for e in exc.errors()]) from exc
    problems = []
    for i, ev in enumerate(scenario.events):
        if ev.at > scenario.until:
            problems.append(index.problem(("events", i, "at"), "event is after 'until'; it would never happen"))
    for i, action in enumerate(scenario.actions):
        if action.at > scenario.until:
            problems.append(index.problem(("actions", i, "at"), "action is after 'until'; it would never happen"))
    if problems:
        raise SpecError(source, problems)
    return scenario
