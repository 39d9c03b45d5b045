-- Alert history, idempotent on message_id (the flow inserts with ON CONFLICT DO NOTHING).
CREATE TABLE IF NOT EXISTS {{schema}}.alert_events (
    message_id  text             NOT NULL UNIQUE,
    fingerprint text             NOT NULL,
    alert_name  text             NOT NULL,
    state       text             NOT NULL,
    at          timestamptz      NOT NULL,
    active_at   timestamptz,
    value       double precision,
    threshold   double precision,
    labels      jsonb            NOT NULL DEFAULT '{}',
    annotations jsonb            NOT NULL DEFAULT '{}',
    severity    text             NOT NULL,
    fire_count  integer,
    suppressed  text,
    recorded_at timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS alert_events_fingerprint_at ON {{schema}}.alert_events (fingerprint, at);
CREATE INDEX IF NOT EXISTS alert_events_at ON {{schema}}.alert_events (at);
