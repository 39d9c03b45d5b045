INSERT INTO {{schema}}.alert_events
    (message_id, fingerprint, alert_name, state, at, active_at, value, threshold, labels, annotations,
     severity, fire_count, suppressed)
SELECT message_id, fingerprint, alert_name, state, at, active_at, value, threshold, labels::jsonb,
       annotations::jsonb, severity, fire_count, suppressed
FROM alert_events_stage
ON CONFLICT (message_id) DO NOTHING
