"""A minimal Faust app for the stack smoke test: counts messages per key in a RocksDB table.

Run by tests/integration/test_faust_smoke.py as `python -m faust -A faust_counter_app worker`; everything
it needs comes from the environment so that each test run gets its own app id, topics and datadir:

    NERVE_KAFKA_BOOTSTRAP       host:port of Kafka (default 127.0.0.1:9092)
    NERVE_FAUST_SMOKE_APP_ID    the app id (consumer group, changelog topic prefix)
    NERVE_FAUST_SMOKE_INPUT     topic with the keyed messages to count (raw bytes)
    NERVE_FAUST_SMOKE_OUTPUT    topic that receives key → running count (JSON number)
    NERVE_FAUST_SMOKE_DATADIR   the worker's datadir (RocksDB files live under it)
    NERVE_FAUST_SMOKE_PARTITIONS  partitions of both topics and of the table (default 4)
"""

from __future__ import annotations

import os

import faust

PARTITIONS = int(os.environ.get("NERVE_FAUST_SMOKE_PARTITIONS", "4"))

app = faust.App(
    os.environ.get("NERVE_FAUST_SMOKE_APP_ID", "nerve-faust-smoke"),
    broker=f"kafka://{os.environ.get('NERVE_KAFKA_BOOTSTRAP', '127.0.0.1:9092')}",
    # rocksdict is installed, so faust's rocksdb driver uses it ("rocksdict://" is not a valid URL).
    store="rocksdb://",
    datadir=os.environ.get("NERVE_FAUST_SMOKE_DATADIR", "var/faust-smoke"),
    # faust defaults to 8 partitions; a table must match its source topic or faust raises PartitionsMismatch.
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    # A single worker has nobody to keep a standby copy.
    table_standby_replicas=0,
    processing_guarantee="at_least_once",
)

readings = app.topic(
    os.environ.get("NERVE_FAUST_SMOKE_INPUT", "nerve-faust-smoke-in"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=PARTITIONS,
)
counts_out = app.topic(
    os.environ.get("NERVE_FAUST_SMOKE_OUTPUT", "nerve-faust-smoke-out"),
    key_type=bytes,
    key_serializer="raw",
    value_serializer="json",
    partitions=PARTITIONS,
)
# Keys are stored raw and counts as JSON: the app-wide default serializers.
counts = app.Table("counts", default=int, partitions=PARTITIONS, key_type=bytes, value_type=int)


@app.agent(readings, name="count-readings")
async def count_readings(stream: faust.StreamT[bytes]) -> None:
    """Counts each key's messages and sends the running count to the output topic."""
    async for key, _reading in stream.items():
        counts[key] += 1
        await counts_out.send(key=key, value=counts[key])
