"""MQTT topic + payload → `SensorEvent`s, or a `Rejected` with the reason (SPEC §2, afferent path).

Pure: no I/O and no clock; the caller passes `now` (epoch seconds). A topic template such as
`sensors/+floor/+room/+sensor/+kind` says which topic levels carry the site below the gateway's own
site, the sensor and the kind; the payload is a SPEC SensorEvent object, a SenML pack or a bare reading.
Everything about a topic (its subscription, its site, its sensor) is worked out once and cached, so the
hot path per message is one dict lookup plus the payload's own parse and validation.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

import orjson

from reflexes.model import DEFAULT_LEVELS
from schemas import DeadLetter, SchemaError, SensorEvent, events_from_senml
from schemas.fields import MAX_TEXT_CHARS, Scalar, json_type_name
from schemas.wire import MAX_PAYLOAD_BYTES

if TYPE_CHECKING:
    from edge_agent.config import EdgeConfig

SITE_LEVELS: Final = DEFAULT_LEVELS
"""The site path levels a topic may capture, top down (SPEC §2)."""

CAPTURE_NAMES: Final = (*SITE_LEVELS, "sensor", "kind")
"""Names allowed after `+` in a topic template; a final `#` captures the remainder as `rest`."""

ROUTE_CACHE_SIZE: Final = 16_384
"""Topics whose routing is remembered; beyond this the cache starts afresh (a flood of odd topics)."""

ROUTE_CACHE_TOPIC_CHARS: Final = 256
"""Longer topics are routed afresh each time: MQTT allows 64 KiB topics, the cache must stay small."""

Format = Literal["auto", "event", "senml", "number"]
KindOf = Callable[[str, str | None], str]


class TemplateError(ValueError):
    """A topic template that cannot be used; the message names the template."""


class Rejected(Exception):  # noqa: N818 - the brief's name: what happened to the message, not an "error"
    """A message that cannot become events; `reason` says what was wrong and where."""

    # The same bytes on the same topic fail the same way: dead-letter them, never retry.
    retriable: ClassVar[bool] = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TopicTemplate:
    """An MQTT topic filter whose wildcard levels are named: `site/+floor/+room/+sensor/+kind`.

    `+name` matches one level and captures it as `name` (one of `CAPTURE_NAMES`), a bare `+` matches
    one level without capturing it, a final `#` matches the remaining levels (none or more) and
    captures them, joined by `/`, as `rest`; any other level must match literally.
    """

    __slots__ = ("_dollar_guard", "_literals", "_named", "_width", "captures", "has_rest", "segments", "text")

    def __init__(self, text: str, segments: tuple[str, ...]) -> None:
        self.text = text
        self.segments = segments
        self.has_rest = segments[-1] == "#"
        fixed = segments[:-1] if self.has_rest else segments
        self._width = len(fixed)
        self._literals = tuple((i, s) for i, s in enumerate(fixed) if not s.startswith("+"))
        self._named = tuple((i, s[1:]) for i, s in enumerate(fixed) if s.startswith("+") and s != "+")
        self.captures: tuple[str, ...] = tuple(name for _, name in self._named) + (
            ("rest",) if self.has_rest else ()
        )
        # MQTT 4.7.2: a filter starting with a wildcard does not match topics starting with '$'.
        self._dollar_guard = segments[0] == "#" or segments[0].startswith("+")

    @classmethod
    def parse(cls, text: str) -> TopicTemplate:
        """Parse a template; raises TemplateError naming the template and the bad level."""
        if not text:
            raise TemplateError("topic template is empty")
        if "\x00" in text:
            raise TemplateError(f"topic template {text!r} contains a NUL character")
        segments = tuple(text.split("/"))
        seen: set[str] = set()
        for index, segment in enumerate(segments):
            if segment == "#":
                if index != len(segments) - 1:
                    raise TemplateError(f"topic template {text!r}: '#' must be the last level")
            elif segment.startswith("+"):
                name = segment[1:]
                if not name:
                    continue
                if name not in CAPTURE_NAMES:
                    close = difflib.get_close_matches(name, CAPTURE_NAMES, n=1)
                    hint = f"; did you mean '+{close[0]}'?" if close else ""
                    raise TemplateError(
                        f"topic template {text!r}: unknown capture '+{name}'{hint} "
                        f"(allowed: {', '.join('+' + n for n in CAPTURE_NAMES)})"
                    )
                if name in seen:
                    raise TemplateError(f"topic template {text!r}: '+{name}' is captured twice")
                seen.add(name)
            elif "+" in segment or "#" in segment:
                raise TemplateError(
                    f"topic template {text!r}: level {segment!r} mixes a wildcard with text; "
                    "a wildcard takes a whole level ('+name', '+' or a final '#')"
                )
        return cls(text, segments)

    @property
    def filter(self) -> str:
        """The MQTT subscription filter: captures become `+` (`site/+/+/+/+/+`)."""
        return "/".join("+" if s.startswith("+") else s for s in self.segments)

    def match(self, topic: str) -> dict[str, str] | None:
        """The captures of `topic` by name, or None when the topic does not fit the template."""
        parts = topic.split("/")
        if len(parts) != self._width and not (self.has_rest and len(parts) >= self._width):
            return None
        if self._dollar_guard and topic.startswith("$"):
            return None
        for index, literal in self._literals:
            if parts[index] != literal:
                return None
        captured = {name: parts[index] for index, name in self._named}
        if self.has_rest:
            captured["rest"] = "/".join(parts[self._width :])
        return captured

    def __repr__(self) -> str:
        return f"TopicTemplate({self.text!r})"


class SitePlan:
    """How a template's captures meet a gateway's site: which captures must agree with it, which extend it."""

    __slots__ = ("appends", "checks", "parts")

    def __init__(self, template: TopicTemplate, site: str) -> None:
        self.parts = tuple(site.split("/"))
        depth = len(self.parts)
        levels = [(SITE_LEVELS.index(n), n) for n in template.captures if n in SITE_LEVELS]
        # (level index, name) captured at or above the gateway's site: must equal its segment there.
        self.checks = tuple(sorted((i, n) for i, n in levels if i < depth))
        below = sorted((i, n) for i, n in levels if i >= depth)
        # Captures below the site are appended in level order; a gap would shift every later level.
        for position, (level, name) in enumerate(below):
            if level != depth + position:
                missing = SITE_LEVELS[depth + position]
                raise TemplateError(
                    f"topic template {template.text!r} captures +{name} but not +{missing}: the gateway's "
                    f"site {site!r} ends at level {depth}, so the topic must name every level below it in order"
                )
        self.appends = tuple(n for _, n in below)

    def site(self, captured: dict[str, str]) -> tuple[str, bool]:
        """(the event site for these captures, whether it lies inside the gateway's site)."""
        parts = list(self.parts)
        inside = True
        for level, name in self.checks:
            if captured[name] != parts[level]:
                parts[level] = captured[name]
                inside = False
        parts.extend(captured[name] for name in self.appends)
        return "/".join(parts), inside


class _Subscription:
    __slots__ = ("format", "kind", "plan", "template", "unit")

    def __init__(self, template: TopicTemplate, fmt: Format, kind: str | None, unit: str | None, site: str):
        self.template = template
        self.format = fmt
        self.kind = kind
        self.unit = unit
        self.plan = SitePlan(template, site)


class _Route:
    """Everything a topic alone decides; `problem` set means every message on it is rejected."""

    __slots__ = (
        "format",
        "kind",
        "kind_of",
        "number_problem",
        "problem",
        "sensor",
        "site",
        "template",
        "unit",
    )

    def __init__(self, problem: str | None = None) -> None:
        self.problem = problem
        self.number_problem: tuple[str, str] | None = None  # why a bare reading has no sensor or kind here
        self.format: Format = "auto"
        self.template = ""
        self.site = ""
        self.sensor: str | None = None
        self.kind: str | None = None
        self.unit: str | None = None
        self.kind_of: KindOf | None = None


_NUMERIC_START: Final = frozenset("+-.0123456789")
_NON_FINITE: Final = {"nan": "NaN", "inf": "inf", "infinity": "inf"}
_SPACE: Final = b" \t\r\n"


def parse_reading(payload: bytes) -> Scalar:
    """A bare reading: an integer, a finite number, `true`/`false`, a JSON string or plain text.

    Whitespace around it is ignored; text of at most 256 characters is kept as a string reading.
    Raises SchemaError at `payload` (not UTF-8, empty, too long, null) or `value` (NaN, ±inf).
    """
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise SchemaError.at(
            "payload", f"not valid UTF-8 (byte 0x{payload[exc.start]:02x} at offset {exc.start})"
        ) from None
    if not text:
        raise SchemaError.at("payload", "is empty; a bare reading is a number, true/false or short text")
    if len(text) > MAX_TEXT_CHARS:
        raise SchemaError.at(
            "payload", f"a bare reading is at most {MAX_TEXT_CHARS} characters (got {len(text)})"
        )
    if text[0] in _NUMERIC_START and text.isascii() and "_" not in text:
        # int() and float() alone would also take '1_000' and non-ASCII digits; those stay text.
        try:
            if "." not in text and "e" not in text and "E" not in text and "n" not in text.lower():
                return int(text)  # at most 256 digits: far below int()'s 4300-digit guard
            number = float(text)
        except ValueError:
            return text
        if number - number == 0.0:
            return number
        shown = "NaN" if number != number else ("-inf" if number < 0 else "inf")
        raise SchemaError.at("value", f"{text} is {shown}, which is not allowed (a reading must be finite)")
    if text == "true" or text == "false":
        return text == "true"
    lowered = text.lower()
    if lowered in _NON_FINITE:
        raise SchemaError.at(
            "value", f"{text} is {_NON_FINITE[lowered]}, which is not allowed (a reading must be finite)"
        )
    if text == "null":
        raise SchemaError.at("payload", "null is not a reading")
    if text[0] == '"':
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise SchemaError.at("payload", f"not a valid JSON string: {exc}") from None
        if not isinstance(value, str):  # '"a" 1' and the like are rejected by orjson already
            raise SchemaError.at("payload", f"expected a JSON string, got {json_type_name(value)}")
        return value
    return text


def _load_object(payload: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        # orjson's own message for NaN and Infinity does not name them ("unexpected character").
        rest = payload[exc.pos : exc.pos + 8]
        negative = exc.pos > 0 and payload[exc.pos - 1 : exc.pos] == b"-"
        name = "NaN" if rest.startswith(b"NaN") else ("inf" if rest == b"Infinity" else "")
        if name:
            shown = "-inf" if negative and name == "inf" else name
            raise SchemaError.at(
                "payload", f"{shown} is not allowed (char {exc.pos - negative}); readings must be finite"
            ) from None
        raise SchemaError.at("payload", f"not valid JSON: {exc}") from None
    if type(data) is not dict:
        raise SchemaError.at("payload", f"expected a JSON object (a SensorEvent), got {json_type_name(data)}")
    return data


_BOM: Final = b"\xef\xbb\xbf"  # UTF-8 byte order mark


def _ahead(where: str, ts: float, now: float, limit: float) -> str:
    hint = "; milliseconds given as seconds?" if ts > now * 100 else ""
    return (
        f"{where}: {ts!r} is {ts - now:,.0f} s ahead of the gateway's clock, more than max_ahead_s "
        f"({limit:g} s): a device clock that is wrong{hint}"
    )


class Decoder:
    """Turns MQTT messages into SensorEvents for one gateway, per its `EdgeConfig`.

    Subscriptions are tried in config order; the first whose template matches the topic decides the
    format, the site below the gateway's and the sensor and kind the topic supplies.
    """

    max_payload_bytes: ClassVar[int] = MAX_PAYLOAD_BYTES

    def __init__(self, config: EdgeConfig) -> None:
        self.site = config.site
        self._inside = config.site + "/"
        self._sensors = frozenset(config.sensors) if config.sensors is not None else None
        self._subscriptions = tuple(
            _Subscription(TopicTemplate.parse(s.topic), s.format, s.kind, s.unit, config.site)
            for s in config.mqtt.subscriptions
        )
        self._routes: dict[str, _Route] = {}
        self._max_ahead_s = config.max_ahead_s if config.max_ahead_s is not None else math.inf

    @property
    def filters(self) -> list[str]:
        """The MQTT subscription filters, in config order."""
        return [s.template.filter for s in self._subscriptions]

    def decode(self, topic: str, payload: bytes, now: float) -> list[SensorEvent]:
        """The events in one MQTT message; `now` is the receipt time in epoch seconds.

        Raises Rejected, and nothing else, for a payload over 64 KiB, a topic outside every
        subscription or outside this gateway's site, an invalid payload or an unknown sensor.
        """
        if len(payload) > self.max_payload_bytes:
            raise Rejected(f"payload: {len(payload)} bytes exceeds the {self.max_payload_bytes}-byte limit")
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic)
        if route.problem is not None:
            raise Rejected(route.problem)
        if payload.startswith(_BOM):  # some devices' JSON libraries write one; RFC 8259 lets a parser skip it
            payload = payload[3:]
        fmt = route.format
        if fmt == "auto":
            head = payload[:1]
            if head and head in _SPACE:
                head = payload.lstrip()[:1]
            fmt = "event" if head == b"{" else ("senml" if head == b"[" else "number")
        try:
            if fmt == "event":
                events = [self._event(route, payload, now)]
            elif fmt == "senml":
                events = events_from_senml(payload, site=route.site, kind_of=route.kind_of, now=now)
            else:
                events = [self._number(route, payload, now)]
        except SchemaError as exc:
            raise Rejected(str(exc)) from None
        latest = now + self._max_ahead_s
        for index, event in enumerate(events):
            if event.ts > latest:
                where = f"senml[{index}]." if fmt == "senml" else ""
                raise Rejected(_ahead(f"{where}ts", event.ts, now, self._max_ahead_s))
        if self._sensors is not None:
            for index, event in enumerate(events):
                if event.sensor not in self._sensors:
                    where = f" (senml[{index}])" if fmt == "senml" else ""
                    raise Rejected(
                        f"sensor: unknown sensor {event.sensor!r}{where}: not in this gateway's sensors"
                    )
        return events

    def dead_letter(self, topic: str, payload: bytes, reason: str, now: float) -> DeadLetter:
        """The dead letter for a rejected message: its topic, the reason and the raw payload."""
        return DeadLetter.of(topic, reason, payload, now)

    def _route(self, topic: str) -> _Route:
        route = self._build_route(topic)
        if len(topic) <= ROUTE_CACHE_TOPIC_CHARS:
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[topic] = route
        return route

    def _build_route(self, topic: str) -> _Route:
        for subscription in self._subscriptions:
            captured = subscription.template.match(topic)
            if captured is not None:
                break
        else:
            return _Route(f"topic {topic!r} matches no subscription of this gateway")
        template = subscription.template
        for name, value in captured.items():
            if not value and name != "rest":
                return _Route(f"topic {topic!r}: level +{name} is empty (template {template.text!r})")
        site, inside = subscription.plan.site(captured)
        if not inside:
            return _Route(
                f"topic site {site!r} is outside this gateway's site {self.site!r} (topic {topic!r})"
            )
        route = _Route()
        route.format = subscription.format
        route.template = template.text
        route.site = site
        route.sensor = captured.get("sensor")
        route.kind = captured.get("kind", subscription.kind)
        route.unit = subscription.unit
        if route.kind is not None:
            kind = route.kind
            route.kind_of = lambda _name, _unit: kind
        for name in ("sensor", "kind"):
            if getattr(route, name) is None:
                route.number_problem = (
                    "topic",
                    f"{topic!r} names no {name}: a bare reading needs +{name} in the template "
                    f"{template.text!r} (or a JSON event payload)",
                )
                break
        return route

    def _event(self, route: _Route, payload: bytes, now: float) -> SensorEvent:
        data = _load_object(payload)
        # The payload wins; the topic and the subscription fill in what it leaves out.
        data.setdefault("site", route.site)
        data.setdefault("ts", now)
        for key, value in (("sensor", route.sensor), ("kind", route.kind), ("unit", route.unit)):
            if value is not None and key not in data:
                data[key] = value
        try:
            event = SensorEvent.from_dict(data)
        except SchemaError as exc:
            raise SchemaError(
                (
                    where,
                    f"{message}: not in the payload, and the topic template {route.template!r} has no +{where}",
                )
                if message == "is required" and where in ("sensor", "kind")
                else (where, message)
                for where, message in exc.problems
            ) from None
        if event.site != self.site and not event.site.startswith(self._inside):
            raise SchemaError.at("site", f"{event.site!r} is outside this gateway's site {self.site!r}")
        return event

    def _number(self, route: _Route, payload: bytes, now: float) -> SensorEvent:
        if route.number_problem is not None:
            raise SchemaError([route.number_problem])
        if route.format == "number" and payload.lstrip()[:1] in (b"{", b"["):
            raise SchemaError.at(
                "payload", "JSON on a 'number' subscription; use format 'event', 'senml' or 'auto'"
            )
        return SensorEvent.from_dict(
            {
                "site": route.site,
                "sensor": route.sensor,
                "kind": route.kind,
                "value": parse_reading(payload),
                "unit": route.unit,
                "ts": now,
            }
        )
