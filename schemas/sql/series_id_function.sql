-- The same hash as connectors.storage.timescale.series_id(), for queries
-- (`WHERE series_id = s.series_id('db|cpu|')`) and for the migration of a table created with
-- the old (series_key, time) key.
CREATE OR REPLACE FUNCTION {{schema}}.series_id(key text) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$ SELECT encode(substring(sha256(convert_to(key, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid $fn$;
