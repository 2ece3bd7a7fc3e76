"""YAML text → plain Python values that remember the line each key and item was written on."""

from __future__ import annotations

import datetime
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

MAX_RULE_FILE_BYTES = 4 * 1024 * 1024


class YMap(dict[str, Any]):
    """A mapping with `line` (1-based) of itself and `key_line(k)` of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def key_line(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class YSeq(list[Any]):
    """A sequence with `line` of itself and `item_line(i)` of each item."""

    line: int = 0
    item_lines: list[int]

    def item_line(self, i: int) -> int:
        return self.item_lines[i] if i < len(self.item_lines) else self.line


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _plain(node: Any, line: int) -> Any:
    if isinstance(node, CommentedMap):
        out = YMap()
        out.line = node.lc.line + 1
        out.key_lines = {}
        for k, v in node.items():
            kline = node.lc.key(k)[0] + 1
            key = k if isinstance(k, str) else str(_plain(k, kline))
            out.key_lines[key] = kline
            out[key] = _plain(v, node.lc.value(k)[0] + 1)
        return out
    if isinstance(node, CommentedSeq):
        seq = YSeq()
        seq.line = node.lc.line + 1
        seq.item_lines = []
        for i, v in enumerate(node):
            iline = node.lc.item(i)[0] + 1
            seq.item_lines.append(iline)
            seq.append(_plain(v, iline))
        return seq
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, datetime.date | datetime.datetime):
        return node.isoformat()  # rules never need dates; keep the text so the checker can name it
    return str(node)


def parse_yaml(text: str) -> Any:
    """Parse one YAML document into YMap/YSeq/scalars; raises YamlSyntaxError with the line."""
    if len(text.encode()) > MAX_RULE_FILE_BYTES:
        raise YamlSyntaxError(f"rule file is larger than {MAX_RULE_FILE_BYTES} bytes", 1)
    yaml = YAML(typ="rt", pure=True)
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise YamlSyntaxError(f"YAML syntax error: {e.problem or e.context}", line) from None
    except (YAMLError, RecursionError, ValueError, TypeError, IndexError, KeyError) as e:
        # ruamel itself fails on some odd scalars (an IndexError on "-_"): still the file's fault
        raise YamlSyntaxError(f"YAML error: {e!r}", 1) from None
    return _plain(doc, 1)
