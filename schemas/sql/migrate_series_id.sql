ALTER TABLE {{schema}}.metrics_hot ADD COLUMN IF NOT EXISTS series_id uuid;
UPDATE {{schema}}.metrics_hot SET series_id = {{schema}}.series_id(series_key) WHERE series_id IS NULL;
ALTER TABLE {{schema}}.metrics_hot ALTER COLUMN series_id SET NOT NULL;
ALTER TABLE {{schema}}.metrics_hot DROP CONSTRAINT IF EXISTS metrics_hot_pkey;
ALTER TABLE {{schema}}.metrics_hot ADD PRIMARY KEY (series_id, time);
