-- The control plane's audit trail: every API write (who = the token's name) and every event read
-- from the control topic (silences, acknowledgements, rule-set reloads of the jobs). Idempotent on
-- event_key (a hash of the event's wire value), so every API replica may insert what it reads.
CREATE TABLE IF NOT EXISTS {{schema}}.control_audit (
    id          bigserial   PRIMARY KEY,
    event_key   text        UNIQUE,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    target      text        NOT NULL DEFAULT '',
    fingerprint text,
    detail      jsonb       NOT NULL DEFAULT '{}',
    source      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS control_audit_at ON {{schema}}.control_audit (at, id);
CREATE INDEX IF NOT EXISTS control_audit_fingerprint ON {{schema}}.control_audit (fingerprint, at);
