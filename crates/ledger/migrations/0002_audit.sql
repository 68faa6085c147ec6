-- The audit fields. Added columns: rows loaded before this migration keep
-- no address, no credential and no guardrail actions.
ALTER TABLE switchyard_usage_records
    ADD COLUMN client_addr TEXT,
    ADD COLUMN credential  TEXT,
    ADD COLUMN guardrails  JSONB NOT NULL DEFAULT '[]'::jsonb;

-- An export pages by (time, request_id): with both in the index each page is
-- an ordered range scan. It serves every query the time index served.
CREATE INDEX switchyard_usage_records_time_id ON switchyard_usage_records (time, request_id);
DROP INDEX switchyard_usage_records_time;

-- Append-only: no UPDATE rewrites a record (the writer only inserts, with
-- ON CONFLICT DO NOTHING, which fires no update trigger). DELETE stays
-- possible, for an operator's retention.
CREATE FUNCTION switchyard_usage_records_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'usage records are append-only';
END;
$$;

CREATE TRIGGER switchyard_usage_records_append_only
    BEFORE UPDATE ON switchyard_usage_records
    FOR EACH ROW EXECUTE FUNCTION switchyard_usage_records_append_only();

-- Captured payloads (keys with capture_payloads), one row per request that
-- has one. A table of their own: the records' rows stay small for the
-- reports that scan them, and only the audit export joins this one. They
-- go with their record when it is deleted, and are append-only like it.
CREATE TABLE switchyard_usage_payloads (
    request_id TEXT  NOT NULL PRIMARY KEY
        REFERENCES switchyard_usage_records (request_id) ON DELETE CASCADE,
    payload    JSONB NOT NULL
);

CREATE TRIGGER switchyard_usage_payloads_append_only
    BEFORE UPDATE ON switchyard_usage_payloads
    FOR EACH ROW EXECUTE FUNCTION switchyard_usage_records_append_only();
