"""Kafka I/O: metric source, sink, topics, serde (JSON/Avro), dead letters, replay, the sample loader."""
