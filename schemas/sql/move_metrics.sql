INSERT INTO {{schema}}.metrics_hot
    (time, series_id, series_key, metric_name, value, labels, instance_id, database_type, region,
     environment)
SELECT to_timestamp(ts), series_id, series_key, metric_name, value, labels::jsonb, instance_id,
       database_type, region, environment
FROM metrics_hot_stage
ON CONFLICT (series_id, time) DO NOTHING
