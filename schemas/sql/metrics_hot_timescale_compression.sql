-- Run only when compression is not enabled yet (altering it again fails once chunks are compressed).
ALTER TABLE {{schema}}.metrics_hot SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'series_id', timescaledb.compress_orderby = 'time DESC');
