-- Failed jobs, kept 30 days for the ops console. arq keeps a job's result only an hour
-- (WorkerSettings.keep_result), and cannot keep it longer: that result is how
-- enqueue_tenant_job de-duplicates job ids. One row per failed try, written by the worker's
-- after_job_end hook (kith.jobs.failures) once arq has recorded the job's outcome; a daily cron
-- deletes rows older than 30 days.
CREATE TABLE public.job_failures (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    function   text NOT NULL,
    -- arq's id (queue-prefixed), as its kept result names the job
    job_id     text NOT NULL,
    -- a tenant job's first argument. No foreign key: a job queued with an id that names no
    -- workspace failed all the same, and the record outlives a deleted workspace's row
    tenant_id  bigint,
    tries      integer NOT NULL CHECK (tries >= 1),
    -- the exception's class and first line, email addresses blanked (figures.error_line)
    error      text NOT NULL,
    -- true when arq will not run the job again (raised, timed out, or retried on its last try)
    final      boolean NOT NULL
);
-- the dashboard's last 7 days, and retention
CREATE INDEX job_failures_at_idx ON public.job_failures (at);
-- a workspace's latest failures (the console's workspace page)
CREATE INDEX job_failures_tenant_idx ON public.job_failures (tenant_id, at DESC) WHERE tenant_id IS NOT NULL;
-- "is this kept arq result already recorded?"
CREATE INDEX job_failures_job_idx ON public.job_failures (job_id, at);

-- When deliver() claimed the row (pending/failed -> sending): a row 'sending' for over an hour
-- was interrupted mid-SMTP (its worker died) and is shown to operators, never sent again.
ALTER TABLE public.outbox_emails ADD COLUMN claimed_at timestamptz;
-- the outbox sweeper's work: rows still pending, and rows stuck sending
CREATE INDEX outbox_emails_waiting_idx ON public.outbox_emails (created_at)
    WHERE status IN ('pending', 'sending');
