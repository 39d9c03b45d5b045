"""The metrics gateway: seed JSON, Prometheus remote_write and OTLP over HTTP -> metric topics."""
