"""The wire form of a deployed rule set on the compacted `nerve.rules` topic (key = rule set name).

`{"name": …, "version": N, "files": [[file name, YAML text], …], "sha256": …, "deployed_at": epoch s}`
— the texts, not a compiled form, so every host checks and compiles them itself with its own engine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Deployment:
    name: str
    version: int
    files: tuple[tuple[str, str], ...]
    sha256: str
    deployed_at: float

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "name": self.name,
                "version": self.version,
                "files": self.files,
                "sha256": self.sha256,
                "deployed_at": self.deployed_at,
            }
        )


def digest(files: list[tuple[str, str]]) -> str:
    """sha256 of the files (names and texts), to tell versions apart in logs."""
    return hashlib.sha256(orjson.dumps(files)).hexdigest()


def decode_deployment(raw: bytes) -> Deployment:
    """Parse a rules-topic record; raises ValueError naming what is wrong."""
    try:
        data = orjson.loads(raw)
        files = tuple((str(name), str(text)) for name, text in data["files"])
        return Deployment(
            str(data["name"]),
            int(data["version"]),
            files,
            str(data.get("sha256", "")),
            float(data.get("deployed_at", 0.0)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a rule set deployment: {e!r}") from None
