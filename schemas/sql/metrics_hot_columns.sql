-- The columns of metrics_hot, the same in both storage modes (pasted into their CREATE TABLE).
    time          timestamptz      NOT NULL,
    series_id     uuid             NOT NULL,
    series_key    text             NOT NULL,
    metric_name   text             NOT NULL,
    value         double precision NOT NULL,
    labels        jsonb            NOT NULL DEFAULT '{}',
    instance_id   text             NOT NULL,
    database_type text             NOT NULL,
    region        text,
    environment   text,
    PRIMARY KEY (series_id, time)
