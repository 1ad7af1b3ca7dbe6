-- Backup and restore runs: one row per backup or restore a workspace asked for, the schedule
-- queued, or an operator triggered. The row is the record of what was done (arq delivers at
-- least once and its cron can fire twice): a job claims its run before working and does nothing
-- when the run is no longer queued. The archives themselves live in backup storage (local
-- folder or S3); a run names the backup it made (or restored from) by id.

CREATE TABLE public.backup_runs (
    id                        bigserial PRIMARY KEY,
    tenant_id                 bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    -- scheduled: by plan (daily or weekly); manual: a workspace admin (page or API);
    -- ops: a support operator; restore: an operator restoring backup_id and switching over
    kind                      text NOT NULL CHECK (kind IN ('scheduled', 'manual', 'ops', 'restore')),
    status                    text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    -- the UTC day a scheduled run belongs to: one scheduled run per workspace and day
    scheduled_for             date,
    -- what the job is doing now (queued, copying, loading, verifying, migrating, switching,
    -- retention, done, failed), and the job's latest progress line
    phase                     text NOT NULL DEFAULT 'queued',
    message                   text NOT NULL DEFAULT '',
    tables_done               integer NOT NULL DEFAULT 0,
    tables_total              integer,
    rows_done                 bigint NOT NULL DEFAULT 0,
    -- the backup made (backup runs, once known) or restored from (restore runs, from the start)
    backup_id                 text CHECK (backup_id ~ '^\d{8}T\d{6}Z-[0-9a-f]{6}$'),
    size_bytes                bigint,
    error                     text,
    -- who asked: a member (identity) or an operator; the label is what people read
    requested_by_identity_id  bigint REFERENCES public.identities (id) ON DELETE SET NULL,
    requested_by_operator_id  bigint REFERENCES public.operators (id) ON DELETE SET NULL,
    requested_by_label        text NOT NULL DEFAULT '',
    reason                    text NOT NULL DEFAULT '',
    -- restore runs: where the workspace's previous data is kept (t_<id>_old_<time>)
    old_schema                text,
    -- bumped by each claim; progress and the finish name it, so a run taken over after its
    -- worker died cannot be finished by the old one
    attempts                  integer NOT NULL DEFAULT 0,
    -- set when retention deleted the backup this run made
    pruned_at                 timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    started_at                timestamptz,
    -- refreshed by a running job every few seconds; a running run without one for
    -- KITH_BACKUP_STALE_MINUTES is abandoned (its worker died)
    heartbeat_at              timestamptz,
    finished_at               timestamptz,
    CHECK ((kind = 'scheduled') = (scheduled_for IS NOT NULL)),
    CHECK (kind <> 'restore' OR backup_id IS NOT NULL),
    CHECK (kind NOT IN ('ops', 'restore') OR length(btrim(reason)) > 0),
    CHECK (status <> 'failed' OR error IS NOT NULL),
    CHECK ((status IN ('done', 'failed')) = (finished_at IS NOT NULL))
);

-- "the latest runs of a workspace" (the backups page, the console), newest first
CREATE INDEX backup_runs_tenant_latest_idx ON public.backup_runs (tenant_id, id DESC);
-- "failed runs", newest first, for the console and monitoring
CREATE INDEX backup_runs_failed_idx ON public.backup_runs (finished_at DESC) WHERE status = 'failed';
-- the scheduler's and the sweep's work: runs still waiting or running
CREATE INDEX backup_runs_active_idx ON public.backup_runs (status, created_at) WHERE status IN ('queued', 'running');
-- at most one queued or running run per workspace: "Back up now" is refused while one is under way,
-- and a backup never runs beside a restore of the same workspace
CREATE UNIQUE INDEX backup_runs_one_active_key ON public.backup_runs (tenant_id) WHERE status IN ('queued', 'running');
-- one scheduled run per workspace and day, however often the cron fires
CREATE UNIQUE INDEX backup_runs_scheduled_day_key ON public.backup_runs (tenant_id, scheduled_for)
    WHERE kind = 'scheduled';
-- retention: a workspace's finished backups by the id they made
CREATE INDEX backup_runs_backup_idx ON public.backup_runs (tenant_id, backup_id) WHERE backup_id IS NOT NULL;
