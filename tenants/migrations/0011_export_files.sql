-- Exports that run in the background (kith.tenants.exports.jobs). Runs with search_path set to
-- the tenant's schema; public objects are qualified.
--
-- An export of a big list is one row here, from the request to its expiry. The file itself lives
-- on disk (<KITH_DATA_DIR>/exports/t_<id>/<export id>.<csv|xlsx>), written as a .part file and
-- renamed when complete, never in the database. The row keeps what was asked (the list query as
-- the export resolved it when it was queued: a saved view's own filters, every column for
-- "all"), so the job exports exactly that whatever happens to the view meanwhile.
CREATE TABLE export_files (
    id               bigserial PRIMARY KEY,
    object_type      text NOT NULL CHECK (object_type IN ('companies', 'contacts', 'leads', 'deals')),
    format           text NOT NULL CHECK (format IN ('csv', 'xlsx')),
    -- the list query as the export takes it: {"filters": [[field, op, value]...], "sort", "q",
    -- "columns"}; a saved view's definition when view_id is set
    query            jsonb NOT NULL DEFAULT '{}'::jsonb,
    view_id          bigint,
    all_columns      boolean NOT NULL DEFAULT false,
    -- the file's columns (list field names, custom.<key> for custom fields) and their headers,
    -- in the workspace's language as it was when the export was queued
    columns          jsonb NOT NULL DEFAULT '[]'::jsonb,
    labels           jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- queued -> running -> done | failed | cancelled
    status           text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed',
                                                                      'cancelled')),
    rows_done        bigint NOT NULL DEFAULT 0,
    rows_total       bigint,          -- an estimate when queued; the rows written once done
    file_name        text NOT NULL CHECK (length(file_name) BETWEEN 1 AND 255),  -- offered to the browser
    file_size        bigint,          -- bytes, once done
    error            text NOT NULL DEFAULT '',
    cancel_requested boolean NOT NULL DEFAULT false,
    -- the job run working on it (a random token) and its heartbeat, written every second: a job
    -- delivered twice claims the row once; a run whose heartbeat stopped may be claimed again
    claim            text NOT NULL DEFAULT '',
    heartbeat_at     timestamptz,
    created_by_id    bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    -- when the row and its file are deleted (KITH_EXPORT_KEEP_DAYS after it was queued, then after
    -- it was done)
    expires_at       timestamptz NOT NULL
);
-- a member's own exports, newest first (the exports page and GET /exports/jobs)
CREATE INDEX export_files_creator_idx ON export_files (created_by_id, id DESC);
-- the daily cleanup
CREATE INDEX export_files_expiry_idx ON export_files (expires_at);
