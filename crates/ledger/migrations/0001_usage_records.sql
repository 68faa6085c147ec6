-- One row per request the gateway served. Money is exact: picodollars
-- (10^-12 USD) in BIGINT, summed as numeric and checked back into bigint.
CREATE TABLE switchyard_usage_records (
    request_id          TEXT        NOT NULL PRIMARY KEY,
    time                TIMESTAMPTZ NOT NULL,
    router              TEXT        NOT NULL,
    operation           TEXT        NOT NULL,
    key_id              TEXT,
    team_id             TEXT,
    user_id             TEXT,
    model               TEXT        NOT NULL,
    provider            TEXT,
    served_model        TEXT,
    input_tokens        BIGINT      NOT NULL DEFAULT 0,
    cached_input_tokens BIGINT      NOT NULL DEFAULT 0,
    cache_write_tokens  BIGINT      NOT NULL DEFAULT 0,
    output_tokens       BIGINT      NOT NULL DEFAULT 0,
    reasoning_tokens    BIGINT      NOT NULL DEFAULT 0,
    images              BIGINT      NOT NULL DEFAULT 0,
    cost_pico           BIGINT      NOT NULL DEFAULT 0,
    saved_pico          BIGINT      NOT NULL DEFAULT 0,
    estimated           BOOLEAN     NOT NULL DEFAULT FALSE,
    cache_hit           BOOLEAN     NOT NULL DEFAULT FALSE,
    latency_ms          BIGINT      NOT NULL DEFAULT 0,
    outcome             TEXT        NOT NULL
);

CREATE INDEX switchyard_usage_records_time     ON switchyard_usage_records (time);
CREATE INDEX switchyard_usage_records_key      ON switchyard_usage_records (key_id, time);
CREATE INDEX switchyard_usage_records_team     ON switchyard_usage_records (team_id, time);
CREATE INDEX switchyard_usage_records_user     ON switchyard_usage_records (user_id, time);
CREATE INDEX switchyard_usage_records_model    ON switchyard_usage_records (model, time);
CREATE INDEX switchyard_usage_records_provider ON switchyard_usage_records (provider, time);
