-- Session-local staging tables: each batch is COPYed here, then moved with
-- INSERT ... ON CONFLICT DO NOTHING (move_metrics.sql, move_alert_events.sql) in one transaction.
CREATE TEMP TABLE IF NOT EXISTS metrics_hot_stage (
    ts double precision, series_id uuid, series_key text, metric_name text, value double precision,
    labels text, instance_id text, database_type text, region text, environment text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS alert_events_stage (
    message_id text, fingerprint text, alert_name text, state text, at timestamptz,
    active_at timestamptz, value double precision, threshold double precision, labels text,
    annotations text, severity text, fire_count integer, suppressed text
) ON COMMIT DELETE ROWS;
