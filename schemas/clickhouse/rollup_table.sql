-- metrics_1m / metrics_5m / metrics_1h. A row's identity is (series_key, window_start): a
-- replay inserts the same row again and the merge keeps one (exact reads use FINAL).
CREATE TABLE IF NOT EXISTS {{table}} (
    series_key    String,
    window_start  DateTime('UTC'),
    instance_id   LowCardinality(String),
    database_type LowCardinality(String),
    metric_name   LowCardinality(String),
    region        LowCardinality(String),
    environment   LowCardinality(String),
    labels        Map(LowCardinality(String), String),
    count         UInt64,
    sum           Float64,
    min           Float64,
    max           Float64,
    avg           Float64,
    p50           Float64,
    p95           Float64,
    p99           Float64
) ENGINE = ReplacingMergeTree
PARTITION BY {{partition_by}}
ORDER BY (metric_name, instance_id, series_key, window_start)
TTL window_start + INTERVAL {{ttl_days}} DAY
SETTINGS ttl_only_drop_parts = 1
