-- Compression and retention, both run by TimescaleDB's own jobs.
SELECT add_compression_policy(format('%I.metrics_hot', {{schema_literal}})::regclass,
    make_interval(days => {{compress_after_days}}), if_not_exists => TRUE);
SELECT add_retention_policy(format('%I.metrics_hot', {{schema_literal}})::regclass,
    make_interval(days => {{retention_days}}), if_not_exists => TRUE);
