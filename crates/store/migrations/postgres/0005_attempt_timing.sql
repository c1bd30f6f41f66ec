-- Phases of each attempt (milliseconds; NULL where not measured).
ALTER TABLE attempts ADD COLUMN dns_ms BIGINT;
ALTER TABLE attempts ADD COLUMN connect_ms BIGINT;
ALTER TABLE attempts ADD COLUMN ttfb_ms BIGINT;
