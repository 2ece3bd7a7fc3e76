"""Errors of the reflex language: each names the file, the line and the reflex id."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class RuleError:
    """One problem in a rule file, located as precisely as the YAML allows."""

    file: str
    line: int
    reflex: str | None
    message: str

    def __str__(self) -> str:
        who = self.reflex if self.reflex is not None else "(rule set)"
        return f"{self.file}:{self.line}: {who}: {self.message}"


class RuleSetError(ValueError):
    """A rule set that failed the check; carries every error found, not only the first."""

    def __init__(self, errors: Iterable[RuleError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.message))
        super().__init__("\n".join(str(e) for e in self.errors))


class ExpressionError(ValueError):
    """An expression that the grammar refuses; `column` is 1-based within the expression text."""

    def __init__(self, message: str, column: int | None = None) -> None:
        self.column = column
        where = f" (at column {column})" if column is not None else ""
        super().__init__(f"{message}{where}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' — did you mean X?' suffix when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""
