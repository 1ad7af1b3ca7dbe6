-- Campaigns that need a worker: started (sending) or scheduled, one row per workspace campaign.
-- The campaign itself lives in the workspace's schema; this row lets the minute cron find the
-- ones due or abandoned without looking into every workspace's schema. It holds no content.
CREATE TABLE public.campaign_queue (
    tenant_id     bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    campaign_id   bigint NOT NULL,
    -- when a worker should next take it up: the scheduled time, or now for a sending campaign,
    -- or the end of a back-off after a provider refused
    next_run_at   timestamptz NOT NULL DEFAULT now(),
    -- written every few seconds by each job sending it; a stale heartbeat means no job is
    heartbeat_at  timestamptz,
    PRIMARY KEY (tenant_id, campaign_id)
);
CREATE INDEX campaign_queue_due_idx ON public.campaign_queue (next_run_at);
