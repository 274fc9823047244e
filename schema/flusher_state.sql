-- The flusher's own state, in the hot-buffer database so that a delete and its confirmation commit together.
-- {schema} is replaced by flush.state_schema (quoted). Idempotent; never drops anything.
CREATE SCHEMA IF NOT EXISTS {schema};

-- One row per run that took the lock. batch_id labels the run's lake commits.
CREATE TABLE IF NOT EXISTS {schema}.runs (
    batch_id      BIGSERIAL PRIMARY KEY,
    flow_run_id   TEXT,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    watermark     BIGINT,
    status        TEXT NOT NULL DEFAULT 'running',  -- running | completed | failed | abandoned | empty | dry-run
    rows_flushed  BIGINT NOT NULL DEFAULT 0,
    rows_deleted  BIGINT NOT NULL DEFAULT 0,
    vacuumed      BOOLEAN NOT NULL DEFAULT false,
    message       TEXT
);
-- maintenance.enabled: lake maintenance ran right after this run's flush (every maintenance.every_n_flushes).
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS maintained BOOLEAN NOT NULL DEFAULT false;

-- One row per table per run. Life cycle:
--   pending   written before the lake transaction; a lake commit labelled (table, batch) may or may not exist
--   committed the lake commit exists (lake_snapshot_id); its rows are still in PostgreSQL
--   failed    the flush raised; as with pending, a labelled lake commit may exist
--   confirmed the rows were deleted from PostgreSQL (a confirmed_batches row says so; this status follows it)
--   undone    a later lake commit removed this batch's rows from the lake (they were re-flushed)
-- Any labelled lake rows of a pending, committed or failed batch are removed by the table's next flush.
CREATE TABLE IF NOT EXISTS {schema}.table_batches (
    batch_id          BIGINT NOT NULL REFERENCES {schema}.runs (batch_id),
    table_name        TEXT NOT NULL,
    watermark         BIGINT NOT NULL,
    status            TEXT NOT NULL,
    lake_snapshot_id  BIGINT,
    rows_flushed      BIGINT,
    rows_deleted      BIGINT,
    flush_seconds     DOUBLE PRECISION,
    delete_seconds    DOUBLE PRECISION,
    error             TEXT,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, table_name)
);

CREATE INDEX IF NOT EXISTS table_batches_open
    ON {schema}.table_batches (table_name) WHERE status IN ('pending', 'committed', 'failed');

-- Written in the same transaction as the DELETE. That transaction runs on the flush's snapshot, older than the
-- table_batches row, so it can only INSERT here; this table, not table_batches.status, is the truth.
CREATE TABLE IF NOT EXISTS {schema}.confirmed_batches (
    batch_id        BIGINT NOT NULL,
    table_name      TEXT NOT NULL,
    rows_deleted    BIGINT NOT NULL,
    delete_seconds  DOUBLE PRECISION,
    confirmed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, table_name)
);

-- Which state this is (one row). Every lake commit's label carries state_id, and a flush undoes only commits
-- labelled with its own state_id and a batch it has a table_batches row for: a state schema that is new, recreated
-- or restored never touches commits it cannot prove are its own unconfirmed ones.
--   adopted_at/adopted_how  NULL/NULL: not decided yet (a brand-new state; the first flush adopts an empty lake or
--                           refuses); NULL/how: a takeover started and did not finish (flushes refuse);
--                           set/how: adopted ('empty lake', 'upgrade', 'takeover').
--   known_snapshot          the highest lake snapshot whose commits this state has accounted for; each flush checks
--                           only commits after it. NULL after an adoption that gave none: commits after adopted_at.
--   legacy_labels_upto      set on 'upgrade' (a state from before state ids): labels without a state id of batches
--                           up to this one are this state's own. NULL: no such label is ever this state's.
CREATE TABLE IF NOT EXISTS {schema}.state_identity (
    id                  BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    state_id            UUID NOT NULL DEFAULT gen_random_uuid(),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    adopted_at          TIMESTAMPTZ,
    adopted_how         TEXT,
    known_snapshot      BIGINT,
    legacy_labels_upto  BIGINT
);

-- Takeover batches delete more rows than they copy (rows already in the lake are counted, not copied): the
-- delete must match rows_expected (copied + already present) instead of rows_flushed. NULL for plain batches.
ALTER TABLE {schema}.table_batches ADD COLUMN IF NOT EXISTS rows_expected BIGINT;

-- The completeness certificate of a batch's lake commit (flusher/certificate.py): rows and order-independent digest
-- of the rows it added, computed in the lake transaction; `verify` recomputes them from the lake. NULL: a batch
-- that copied nothing, from before certificates, or flushed with certificates off (benchmarks).
ALTER TABLE {schema}.table_batches ADD COLUMN IF NOT EXISTS certificate_rows BIGINT;
ALTER TABLE {schema}.table_batches ADD COLUMN IF NOT EXISTS certificate_digest NUMERIC(40, 0);
ALTER TABLE {schema}.table_batches ADD COLUMN IF NOT EXISTS certificate_hash TEXT;
ALTER TABLE {schema}.table_batches ADD COLUMN IF NOT EXISTS certificate_columns TEXT[];
