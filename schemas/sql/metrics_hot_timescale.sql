-- metrics_hot as a TimescaleDB hypertable with 1-day chunks (existing rows migrated).
CREATE TABLE IF NOT EXISTS {{schema}}.metrics_hot ({{metrics_hot_columns}});
SELECT create_hypertable(format('%I.metrics_hot', {{schema_literal}})::regclass, 'time',
    chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE, migrate_data => TRUE);
CREATE INDEX IF NOT EXISTS metrics_hot_instance_metric_time
    ON {{schema}}.metrics_hot (instance_id, metric_name, time DESC);
