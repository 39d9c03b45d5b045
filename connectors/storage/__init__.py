"""Stores: TimescaleDB/PostgreSQL, ClickHouse (server or chdb), Redis latest values, retries."""
