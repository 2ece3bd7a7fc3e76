"""A synthetic city publishing SPEC sensor events over MQTT, with incidents injected on a schedule.

Pure core: `city` (the model and each gateway's subscriptions), `readings` (normal values and payloads),
`scenarios` (incidents and the alerts of examples/city they must cause), `traffic` (the message stream in
event time). I/O shells: `publisher` (the MQTT client) and `live` (`Simulator`, paced on the wall clock).
"""

from simulator.city import (
    DEFAULT_TOPIC_ROOT,
    Building,
    City,
    CityShape,
    Sensor,
    build_city,
    gateway_config,
    gateway_subscriptions,
    topic_root,
)
from simulator.live import Published, Simulator, Summary
from simulator.publisher import MemoryPublisher, MqttPublisher, Publisher, PublishError
from simulator.scenarios import ExpectedAlert, Scenario, Scripted, all_scenarios, parse, scenario
from simulator.traffic import Injection, Message, Traffic

__all__ = [
    "DEFAULT_TOPIC_ROOT",
    "Building",
    "City",
    "CityShape",
    "ExpectedAlert",
    "Injection",
    "MemoryPublisher",
    "Message",
    "MqttPublisher",
    "PublishError",
    "Published",
    "Publisher",
    "Scenario",
    "Scripted",
    "Sensor",
    "Simulator",
    "Summary",
    "Traffic",
    "all_scenarios",
    "build_city",
    "gateway_config",
    "gateway_subscriptions",
    "parse",
    "scenario",
    "topic_root",
]
