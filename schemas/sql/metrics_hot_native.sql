-- metrics_hot without TimescaleDB: native daily range partitions metrics_hot_pYYYYMMDD plus a
-- DEFAULT partition as a safety net; the flow calls the two functions below.
CREATE TABLE IF NOT EXISTS {{schema}}.metrics_hot ({{metrics_hot_columns}}) PARTITION BY RANGE (time);
CREATE TABLE IF NOT EXISTS {{schema}}.metrics_hot_default PARTITION OF {{schema}}.metrics_hot DEFAULT;
CREATE INDEX IF NOT EXISTS metrics_hot_instance_metric_time
    ON {{schema}}.metrics_hot (instance_id, metric_name, time DESC);

CREATE OR REPLACE FUNCTION {{schema}}.metrics_hot_ensure_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    sch  text := {{schema_literal}};
    part text := 'metrics_hot_p' || to_char(day, 'YYYYMMDD');
    lo   timestamptz := day::timestamp AT TIME ZONE 'UTC';
    hi   timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(sch || '.metrics_hot partitions'));
    IF to_regclass(format('%I.%I', sch, part)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.metrics_hot INCLUDING DEFAULTS)', sch, part, sch);
    -- rows the DEFAULT partition caught for this day move in before the range is attached
    EXECUTE format(
        'WITH moved AS (DELETE FROM %I.metrics_hot_default WHERE time >= $1 AND time < $2 RETURNING *)'
        ' INSERT INTO %I.%I SELECT * FROM moved', sch, sch, part) USING lo, hi;
    EXECUTE format('ALTER TABLE %I.metrics_hot ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                   sch, sch, part, lo, hi);
    RETURN true;
END
$fn$;

CREATE OR REPLACE FUNCTION {{schema}}.metrics_hot_drop_old_partitions(keep interval) RETURNS SETOF text
LANGUAGE plpgsql AS $fn$
DECLARE
    sch    text := {{schema_literal}};
    cutoff timestamptz := now() - keep;
    r      record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(sch || '.metrics_hot partitions'));
    FOR r IN
        SELECT c.relname
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = format('%I.metrics_hot', sch)::regclass
          AND c.relname ~ '^metrics_hot_p[0-9]{8}$'
    LOOP
        IF (to_date(right(r.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff THEN
            EXECUTE format('DROP TABLE %I.%I', sch, r.relname);
            RETURN NEXT r.relname;
        END IF;
    END LOOP;
    EXECUTE format('DELETE FROM %I.metrics_hot_default WHERE time < $1', sch) USING cutoff;
END
$fn$;
