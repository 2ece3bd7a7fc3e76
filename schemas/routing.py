"""Which departments get an alert, and on which topic: the departments file (SPEC §5).

Pure: no broker, no clock. The file names the known departments (each on `<prefix>alerts.<name>` unless
it gives its own topic) and extra routes applied to every alert in order:

    departments:
      fire: {}
      emergency: {topic: nerve.alerts.emergency-centre}
    routes:
      - when: {severity: emergency}
        to: [emergency]

A route's `when` matches an alert when every key it gives matches (`severity`, `district` — the first
segment of the alert's site —, `reflex`, `tier`, `status`; each one value or a list of them, any of
which may match); a route without `when` matches every alert.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.alert import Alert
from schemas.fields import DEPARTMENT_PATTERN, Department, ReflexId
from schemas.settings import load_settings

_DISTRICT_PATTERN: Final = r"^[^/\s*?#+\x00-\x1f\x7f]+$"
_TOPIC_PATTERN: Final = DEPARTMENT_PATTERN  # a department name is a topic name's last part

Severity = Literal["info", "warning", "critical", "emergency"]
Tier = Literal["edge", "brain"]
Status = Literal["raised", "escalated", "cleared"]
District = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_DISTRICT_PATTERN)]
"""A district: the first segment of a site path, e.g. `yuelu`."""
Topic = Annotated[str, StringConstraints(min_length=1, max_length=249, pattern=_TOPIC_PATTERN)]
"""A Kafka topic name: at most 249 letters, digits, '.', '_' and '-'."""

V = TypeVar("V")


def _listed(value: object) -> object:
    # One value stands for a list of one: `severity: emergency` is `severity: [emergency]`.
    return [value] if isinstance(value, str) else value


OneOrMany = Annotated[tuple[V, ...], BeforeValidator(_listed), Field(min_length=1)]
"""One value or a non-empty list of them, held as a tuple."""


def _problem(detail: str) -> PydanticCustomError:
    # A custom error keeps the message as written; a ValueError would gain a "Value error, " prefix.
    return PydanticCustomError("routing", "{detail}", {"detail": detail})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(_Section):
    """Which alerts a route takes: every key given must match; a list matches any of its values."""

    severity: OneOrMany[Severity] | None = None
    district: OneOrMany[District] | None = Field(
        default=None, description="The first segment of the alert's site, e.g. yuelu."
    )
    reflex: OneOrMany[ReflexId] | None = None
    tier: OneOrMany[Tier] | None = None
    status: OneOrMany[Status] | None = None

    def matches(self, alert: Alert) -> bool:
        """Whether `alert` fits every key of this condition."""
        return (
            (self.severity is None or alert.severity in self.severity)
            and (self.district is None or alert.site.split("/", 1)[0] in self.district)
            and (self.reflex is None or alert.reflex in self.reflex)
            and (self.tier is None or alert.tier in self.tier)
            and (self.status is None or alert.status in self.status)
        )


class Route(_Section):
    """An extra route: alerts matching `when` also go to the departments in `to`."""

    when: When = Field(default_factory=When, description="Omitted: every alert.")
    to: OneOrMany[Department]


class DepartmentEntry(_Section):
    """A known department; `topic` replaces the default `<prefix>alerts.<name>`."""

    topic: Topic | None = Field(default=None, description="The full topic name, prefix included.")


class Routing(_Section):
    """The departments file: known departments, their topics, and the extra routes."""

    departments: dict[Department, DepartmentEntry] | None = Field(
        default=None, description="Known departments; omitted: every department is allowed."
    )
    routes: tuple[Route, ...] = ()

    @field_validator("departments", mode="before")
    @classmethod
    def _bare_names(cls, value: Any) -> Any:
        # `fire:` with nothing after it is a department with the default topic, like `fire: {}`.
        if isinstance(value, dict):
            return {name: {} if entry is None else entry for name, entry in value.items()}
        return value

    @model_validator(mode="after")
    def _routes_go_to_known_departments(self) -> Routing:
        for index, route in enumerate(self.routes):
            for position, department in enumerate(route.to):
                if not self.allows(department):
                    raise _problem(f"routes[{index}].to[{position}]: {self._unknown(department)}")
        return self

    @classmethod
    def load(cls, path: Path) -> Routing:
        """The departments file at `path`; raises ConfigError naming the file and the key."""
        return load_settings(path, cls, env_prefix="", hints=_PATTERN_HINTS)

    @classmethod
    def default(cls) -> Routing:
        """Routing without a file: no extra routes, every department allowed on its default topic."""
        return cls()

    def allows(self, department: str) -> bool:
        """Whether `department` is known (always, without a departments list)."""
        return self.departments is None or department in self.departments

    def unknown(self, departments: Iterable[str]) -> list[str]:
        """One message per department not in the file, with a "did you mean" where one is close.

        For checking a rule set's `alert.to` and `escalate.to` at start.
        """
        return [self._unknown(name) for name in dict.fromkeys(departments) if not self.allows(name)]

    def check(self, named: dict[str, list[str]]) -> list[str]:
        """Problems with the departments a rule set names (department → reflex ids): unknown ones."""
        return [
            f"reflex {', '.join(named[name])}: {self._unknown(name)}"
            for name in named
            if not self.allows(name)
        ]

    def departments_for(self, alert: Alert) -> tuple[str, ...]:
        """The alert's own departments, then those of every matching route; each once, order kept.

        Nothing is dropped here, known or not: check a rule set's departments with `unknown` at start.
        """
        chosen = dict.fromkeys(alert.departments)
        for route in self.routes:
            if route.when.matches(alert):
                chosen.update(dict.fromkeys(route.to))
        return tuple(chosen)

    def topic_for(self, department: str, prefix: str) -> str:
        """The topic of `department`'s alerts: its own from the file, else `<prefix>alerts.<department>`."""
        entry = self.departments.get(department) if self.departments is not None else None
        if entry is not None and entry.topic is not None:
            return entry.topic
        return f"{prefix}alerts.{department}"

    def _unknown(self, department: str) -> str:
        close = difflib.get_close_matches(department, list(self.departments or ()), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "add it under departments"
        return f"unknown department {department!r}; {hint}"


_PATTERN_HINTS: Final[dict[str, Callable[[str], str]]] = {
    _DISTRICT_PATTERN: lambda _text: (
        "must be one site segment, without '/', whitespace or * ? # + (e.g. 'yuelu')"
    ),
}
