"""The department side without a broker: the open-alerts fold, (id, status) dedup, one rendered alert line,
and what a department sees when Kafka is not there."""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from brain_bridge.departments import (
    AlertFeed,
    AlertState,
    FeedError,
    KafkaUnreachableError,
    SeenPairs,
    acknowledge,
    alerts_topic,
    decode,
    fold_alerts,
    open_alerts,
)
from nerve_cli import alerts_cmd
from nerve_cli.alerts_cmd import SEVERITY_STYLES, render_alert
from schemas import Ack, Alert

T0 = 1_795_593_600.0
SITE = "yuelu/c12/b3/f2/r201"


def alert(alert_id: str = "a1", status: str = "raised", **changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "id": alert_id,
        "reflex": "kitchen-fire",
        "tier": "edge",
        "status": status,
        "severity": "critical",
        "departments": ["fire"],
        "site": SITE,
        "group": SITE,
        "message": f"Fire suspected in {SITE}",
        "ts": T0,
        "evidence": ["e1"],
        "first_event_ts": T0 - 10,
    }
    return Alert.from_dict(fields | changes)


def ack(alert_id: str, by: str, ts: float, note: str | None = None) -> Ack:
    return Ack(alert_id=alert_id, by=by, ts=ts, note=note)


# ---------------------------------------------------------------- the fold behind open_alerts


def test_fold_follows_an_alert_to_its_furthest_status() -> None:
    raised = alert(ts=T0)
    escalated = alert(status="escalated", ts=T0 + 60, departments=["fire", "police"], message="Escalated: x")
    states = fold_alerts([raised, raised, escalated])
    assert states == [
        AlertState(
            id="a1",
            status="escalated",
            severity="critical",
            reflex="kitchen-fire",
            tier="edge",
            departments=("fire", "police"),
            site=SITE,
            group=SITE,
            message="Escalated: x",
            raised_ts=T0,
            updated_ts=T0 + 60,
        )
    ]
    assert states[0].open and not states[0].acked


def test_fold_is_not_fooled_by_a_late_repeat_of_an_earlier_status() -> None:
    # A replay re-publishes `raised` after `cleared`: the alert stays cleared.
    records = [alert(ts=T0), alert(status="cleared", ts=T0 + 300), alert(ts=T0)]
    [state] = fold_alerts(records)
    assert state.status == "cleared"
    assert not state.open
    assert (state.raised_ts, state.updated_ts) == (T0, T0 + 300)
    # Order of arrival does not matter at all.
    assert fold_alerts(reversed(records)) == fold_alerts(records)


def test_fold_without_the_raise_dates_the_alert_from_its_earliest_record() -> None:
    # A department added by escalation sees only the escalated alert on its own topic.
    [state] = fold_alerts([alert(status="escalated", ts=T0 + 60, departments=["police"])])
    assert (state.status, state.raised_ts, state.departments) == ("escalated", T0 + 60, ("police",))


def test_fold_orders_newest_raised_first_and_ties_by_id() -> None:
    states = fold_alerts(
        [alert("b", ts=T0), alert("old", ts=T0 - 100), alert("a", ts=T0), alert("new", ts=T0 + 100)]
    )
    assert [s.id for s in states] == ["new", "a", "b", "old"]


def test_fold_keeps_the_first_acknowledgement_and_ignores_unknown_ids() -> None:
    acks = [
        ack("a1", "li.wei", T0 + 30, "on my way"),
        ack("a1", "dispatch-bot", T0 + 20),
        ack("a1", "zhang.min", T0 + 40),
        ack("ghost", "someone", T0),
    ]
    [state] = fold_alerts([alert(), alert(status="escalated", ts=T0 + 60)], acks)
    assert (state.acked_by, state.acked_at, state.ack_note) == ("dispatch-bot", T0 + 20, None)
    assert state.acked and state.status == "escalated"


def test_open_alerts_leave_out_cleared_ones() -> None:
    states = fold_alerts(
        [alert("a", ts=T0), alert("b", ts=T0 + 1), alert("b", "cleared", ts=T0 + 9), alert("c", ts=T0 + 2)],
        [ack("a", "ops", T0 + 5)],
    )
    assert [(s.id, s.open, s.acked) for s in states] == [
        ("c", True, False),
        ("b", False, False),
        ("a", True, True),
    ]
    assert [s.id for s in states if s.open] == ["c", "a"]


def test_alert_state_serialises_as_json() -> None:
    [state] = fold_alerts([alert()], [ack("a1", "ops", T0 + 5, "seen")])
    data = orjson.loads(orjson.dumps(state))
    assert data["id"] == "a1"
    assert data["departments"] == ["fire"]
    assert (data["acked_by"], data["ack_note"]) == ("ops", "seen")


# ---------------------------------------------------------------- (id, status) dedup


def test_seen_pairs_let_each_id_and_status_through_once() -> None:
    seen = SeenPairs()
    assert seen.first_time("a1", "raised")
    assert not seen.first_time("a1", "raised")
    assert seen.first_time("a1", "escalated")  # same id, next status: a new event for the department
    assert seen.first_time("a1", "cleared")
    assert seen.first_time("a2", "raised")
    assert len(seen) == 4


def test_seen_pairs_are_bounded_and_forget_the_least_recent_first() -> None:
    seen = SeenPairs(capacity=3)
    for alert_id in ("a", "b", "c"):
        assert seen.first_time(alert_id, "raised")
    assert not seen.first_time("a", "raised")  # a repeat makes "a" recent again
    assert seen.first_time("d", "raised")  # evicts "b", the least recent
    assert len(seen) == 3
    assert not seen.first_time("a", "raised")
    assert seen.first_time("b", "raised")
    with pytest.raises(ValueError, match="capacity"):
        SeenPairs(capacity=0)


def test_the_default_memory_is_the_last_100k_pairs() -> None:
    assert SeenPairs().capacity == 100_000


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None


class FakeConsumer:
    """Hands out preset batches, then nothing; records commits."""

    def __init__(self, batches: Sequence[list[FakeRecord]]) -> None:
        self.batches = list(batches)
        self.commits: list[dict[Any, int]] = []
        self.stopped = False

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, list[FakeRecord]]:
        if not self.batches:
            raise AssertionError("the feed asked for more records than the test has")
        batch = self.batches.pop(0)
        return {("t", 0): batch}

    def assignment(self) -> set[Any]:
        from aiokafka import TopicPartition

        return {TopicPartition("nerve.alerts.fire", 0)}

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(dict(offsets))

    async def stop(self) -> None:
        self.stopped = True


def records(start: int, *values: bytes | None) -> list[FakeRecord]:
    return [FakeRecord("nerve.alerts.fire", 0, offset, value) for offset, value in enumerate(values, start)]


async def test_feed_yields_each_id_and_status_once_and_skips_malformed_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raised, escalated, cleared = alert(), alert(status="escalated", ts=T0 + 60), alert(status="cleared")
    retry = alert(emitted_at=T0 + 1)  # a retry: same (id, status), another emission time
    feed = AlertFeed("127.0.0.1:9092", "fire", group="fire-dispatch")
    consumer = FakeConsumer(
        [
            records(0, raised.to_json(), retry.to_json(), b"{not json", None, escalated.to_json()),
            records(5, raised.to_json(), cleared.to_json(), alert("a2").to_json()),
        ]
    )
    feed._consumer = consumer
    caplog.set_level(logging.WARNING, logger="nerve.departments")
    got = [await anext(feed) for _ in range(4)]
    assert [(a.id, a.status) for a in got] == [
        ("a1", "raised"),
        ("a1", "escalated"),
        ("a1", "cleared"),
        ("a2", "raised"),
    ]
    assert (feed.duplicates, feed.malformed) == (2, 2)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nerve.departments"]
    assert len(warnings) == 2
    assert "nerve.alerts.fire[0]@2" in warnings[0] and "not valid JSON" in warnings[0]
    assert "no value" in warnings[1]
    # Before the second poll it commits what was handled: the caller asked for the third alert, so the
    # escalated one at offset 4 is done, and the skipped records before it count as handled too.
    # The last alert yielded (offset 7) is still with the caller: not committed yet.
    assert [list(c.values()) for c in consumer.commits] == [[5]]
    await feed.__aexit__(None, None, None)  # a clean exit: the last alert counts as handled
    assert [list(c.values()) for c in consumer.commits] == [[5], [8]]
    assert consumer.stopped


async def test_feed_without_a_group_commits_nothing() -> None:
    feed = AlertFeed("127.0.0.1:9092", None)
    assert feed.topic == "nerve.alerts"
    consumer = FakeConsumer([records(0, alert().to_json()), []])
    feed._consumer = consumer
    assert (await anext(feed)).id == "a1"
    await feed.__aexit__(None, None, None)
    assert consumer.commits == []


async def test_a_feed_must_be_entered_before_iterating() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await anext(AlertFeed("127.0.0.1:9092", "fire"))


def test_decode_names_where_a_bad_record_was(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="nerve.departments")
    assert decode(Alert, FakeRecord("nerve.alerts", 3, 17, b'{"id": "x"}')) is None
    [warning] = caplog.records
    assert "nerve.alerts[3]@17" in warning.getMessage() and "reflex" in warning.getMessage()


def test_department_names_must_fit_a_topic() -> None:
    assert alerts_topic("fire") == "nerve.alerts.fire"
    assert alerts_topic("fire", "t1.") == "t1.alerts.fire"
    assert alerts_topic(None, "t1.") == "t1.alerts"
    for bad in ("", "fire brigade", "a/b", "x" * 65):
        with pytest.raises(ValueError, match="department"):
            alerts_topic(bad)


# ---------------------------------------------------------------- one rendered line


def test_an_alert_renders_as_one_readable_line() -> None:
    line = render_alert(alert(ts=T0, id="a7f3"))
    assert line.plain == (
        "2026-11-25 08:00:00  raised    critical  kitchen-fire             "
        f"{SITE}  Fire suspected in {SITE}  [a7f3]"
    )
    assert "\n" not in line.plain
    styles = {line.plain[s.start : s.end].strip(): str(s.style) for s in line.spans}
    assert styles["raised"] == SEVERITY_STYLES["critical"]
    assert styles["critical"] == SEVERITY_STYLES["critical"]
    assert styles["kitchen-fire"] == "bold"


def test_the_status_colour_follows_the_severity_and_cleared_is_green() -> None:
    def status_style(a: Alert) -> str:
        line = render_alert(a)
        status = line.spans[1]  # after the time
        assert line.plain[status.start : status.end].strip() == a.status
        return str(status.style)

    assert status_style(alert(severity="warning")) == "yellow"
    assert status_style(alert(severity="emergency", status="escalated")) == "bold white on red"
    assert status_style(alert(status="cleared")) == "green"


def test_message_text_is_not_read_as_markup() -> None:
    line = render_alert(alert(message="[bold]smoke[/bold] in {site}"))
    assert "[bold]smoke[/bold] in {site}" in line.plain


# ---------------------------------------------------------------- no broker there


@pytest.fixture
def dead_address() -> str:
    """An address where nothing listens: a port bound and released again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


async def test_an_unreachable_kafka_is_a_retriable_error_naming_the_address(dead_address: str) -> None:
    with pytest.raises(KafkaUnreachableError) as caught:
        async with AlertFeed(dead_address, "fire"):
            pass
    assert caught.value.retriable and isinstance(caught.value, FeedError)
    assert dead_address in str(caught.value)
    with pytest.raises(KafkaUnreachableError, match=dead_address):
        await open_alerts(dead_address)
    with pytest.raises(KafkaUnreachableError, match=dead_address):
        await acknowledge(dead_address, "a1", "ops")


def test_feed_errors_say_whether_to_try_again() -> None:
    assert not FeedError("x").retriable
    assert FeedError("x", retriable=True).retriable
    assert KafkaUnreachableError("x").retriable


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nerve")
    alerts_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["alerts", "tail", "--department", "fire"],
        ["alerts", "ack", "a1", "--by", "ops"],
        ["alerts", "list", "--open"],
    ],
)
def test_each_command_exits_1_with_one_line_naming_the_address(
    argv: list[str], dead_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse([*argv, "--bootstrap", dead_address])
    assert args.func(args) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and dead_address in err
    assert err.startswith(f"nerve alerts {argv[1]}: ")


def test_bootstrap_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_KAFKA_BOOTSTRAP", "kafka.city:9093")
    assert parse(["alerts", "list", "--open"]).bootstrap == "kafka.city:9093"
    monkeypatch.delenv("NERVE_KAFKA_BOOTSTRAP")
    args = parse(["alerts", "tail", "--department", "fire"])
    assert (args.bootstrap, args.prefix, args.group, args.json) == ("127.0.0.1:9092", "nerve.", None, False)


def test_an_invalid_ack_is_refused_before_kafka(
    dead_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(["alerts", "ack", "a1", "--by", "", "--bootstrap", dead_address])
    assert args.func(args) == 2
    assert "by: must not be empty" in capsys.readouterr().err
