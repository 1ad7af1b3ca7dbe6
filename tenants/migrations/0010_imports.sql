-- Imports of records from CSV and XLSX files (kith.tenants.imports). Runs with search_path set
-- to the tenant's schema; public objects are qualified.
--
-- An import is one row here, from upload to undo. Its file and its rejected rows live in the
-- import's folder on disk (<KITH_DATA_DIR>/imports/t_<id>/<import id>/), never in the database.
-- The rows are loaded through a temporary staging table (COPY, then set-based statements),
-- inside one transaction that also writes the journal below and the import's final state: a
-- failed, cancelled or killed import leaves nothing behind, and its row says so.
CREATE TABLE imports (
    id                bigserial PRIMARY KEY,
    object_type       text NOT NULL CHECK (object_type IN ('contacts', 'companies', 'leads')),
    -- uploaded: waiting for its mapping; queued / running: a check (dry run), import or undo is
    -- on its way; checked: a dry run finished; imported, failed, cancelled, undone: final states
    status            text NOT NULL DEFAULT 'uploaded' CHECK (status IN (
        'uploaded', 'queued', 'running', 'checked', 'imported', 'failed', 'cancelled', 'undone')),
    -- what the queued or running work is, or the last one was
    run_kind          text NOT NULL DEFAULT '' CHECK (run_kind IN ('', 'check', 'import', 'undo')),
    file_name         text NOT NULL CHECK (length(file_name) BETWEEN 1 AND 255),
    file_size         bigint NOT NULL DEFAULT 0,
    rows_estimate     bigint,                               -- data rows, counted at upload (CSV: lines)
    file_format       text NOT NULL CHECK (file_format IN ('csv', 'xlsx')),
    encoding          text NOT NULL DEFAULT '',
    delimiter         text NOT NULL DEFAULT '',
    headers           jsonb NOT NULL DEFAULT '[]'::jsonb,   -- the file's header row
    sample            jsonb NOT NULL DEFAULT '[]'::jsonb,   -- its first rows, for the mapping screen
    -- column index (as text) -> target field ("name", "email", "custom.vip", ...)
    mapping           jsonb NOT NULL DEFAULT '{}'::jsonb,
    mapping_source    text NOT NULL DEFAULT '',             -- remembered, hubspot, salesforce, headers
    match_key         text NOT NULL DEFAULT '' CHECK (match_key IN ('', 'email', 'phone', 'name', 'domain')),
    on_duplicate      text NOT NULL DEFAULT 'skip' CHECK (on_duplicate IN ('skip', 'update', 'create')),
    -- progress of the queued or running work: rows read so far (and the file's total when known)
    phase             text NOT NULL DEFAULT '',
    rows_done         bigint NOT NULL DEFAULT 0,
    heartbeat_at      timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    -- the outcome of the last check or import: rows, valid, rejected, created, updated, skipped...
    counts            jsonb NOT NULL DEFAULT '{}'::jsonb,
    rejected_sample   jsonb NOT NULL DEFAULT '[]'::jsonb,   -- the first rejected rows with reasons
    error             text NOT NULL DEFAULT '',
    created_by_id     bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    imported_at       timestamptz,
    undone_at         timestamptz
);
CREATE INDEX imports_recent_idx ON imports (id DESC);

-- What an import changed, so that it can be undone: each record it created, and each record it
-- updated with the values it replaced ("before") and the values it wrote ("after"). Undo removes
-- the created records and restores each updated field whose value is still the import's own (a
-- field someone changed since is left as they left it). Erasing a contact deletes its rows here.
CREATE TABLE import_changes (
    import_id   bigint NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    record_id   bigint NOT NULL,
    action      text NOT NULL CHECK (action IN ('created', 'updated')),
    before      jsonb,
    after       jsonb,
    PRIMARY KEY (import_id, record_id)
);
CREATE INDEX import_changes_record_idx ON import_changes (record_id);

-- Mappings people chose, remembered by the file's header row: the next file with the same
-- headers for the same kind of record is mapped the same way.
CREATE TABLE import_mappings (
    object_type  text NOT NULL,
    signature    text NOT NULL,   -- a digest of the normalized header row
    mapping      jsonb NOT NULL,
    match_key    text NOT NULL DEFAULT '',
    on_duplicate text NOT NULL DEFAULT 'skip',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (object_type, signature)
);
