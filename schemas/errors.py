"""The one error every parser of the Nerve contracts raises on bad input."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class SchemaError(ValueError):
    """Input that does not fit a contract.

    `problems` is a list of `(location, message)` pairs: the location names the field
    (`value`, `tags.floor`, `senml[2].v`, or `payload` for the document as a whole) and the
    message says what is wrong with it. `str()` joins them as `location: message; …`.
    """

    # Bad input stays bad: a retry of the same bytes fails the same way.
    retriable: ClassVar[bool] = False

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        listed = [(str(location), str(message)) for location, message in problems]
        if not listed:
            listed = [("payload", "invalid")]
        # Stored as the only argument so that the error pickles and copies as itself.
        super().__init__(listed)
        self.problems: list[tuple[str, str]] = listed

    @classmethod
    def at(cls, location: str, message: str) -> SchemaError:
        """An error with a single problem at `location`."""
        return cls([(location, message)])

    @property
    def locations(self) -> list[str]:
        """The locations of the problems, in order."""
        return [location for location, _ in self.problems]

    def __str__(self) -> str:
        return "; ".join(f"{location}: {message}" for location, message in self.problems)

    def __repr__(self) -> str:
        return f"SchemaError({self.problems!r})"
