"""Edge agent: MQTT in, edge-tier reflexes, disk spool, Kafka uplink (SPEC §1). Not built yet."""
