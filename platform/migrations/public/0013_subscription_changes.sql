-- The history of each workspace's subscription, for the ops dashboard's trial conversion, churn
-- and MRR lost. One row per change of the row in public.billing_subscriptions that touches its
-- status, plan, interval, seats, trial end, comp or past-due start, written in the transaction
-- that makes the change (kith.platform.billing.changes.record_change_in, called by
-- subscriptions.update_in and subscriptions.reconcile_in, which every change goes through:
-- Stripe webhooks, the local provider's plan change, seat syncs, ops trial extensions and comps,
-- the billing job settling a lapsed trial).
--
-- mrr_before / mrr_after: the monthly recurring revenue just before and after the change, by the
-- rule of kith.platform.billing.changes.monthly_revenue, in the plans' currency (USD).
-- Read-only (past_due beyond the grace period) is computed from past_due_since and never written,
-- so each row keeps the past_due_since the change left; readers derive that moment from it.
CREATE TABLE public.subscription_changes (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    at              timestamptz NOT NULL DEFAULT now(),
    from_status     text NOT NULL,
    to_status       text NOT NULL,
    from_plan       text NOT NULL,
    to_plan         text NOT NULL,
    mrr_before      numeric(12, 2) NOT NULL CHECK (mrr_before >= 0),
    mrr_after       numeric(12, 2) NOT NULL CHECK (mrr_after >= 0),
    past_due_since  timestamptz,
    -- what changed, {column: [old, new]}, as the audit entry of the same change has it
    changes         jsonb NOT NULL DEFAULT '{}'
);
-- the dashboard reads the last 60 days (plus a grace period), and each workspace's last row before
CREATE INDEX subscription_changes_at_idx ON public.subscription_changes (at);
CREATE INDEX subscription_changes_tenant_idx ON public.subscription_changes (tenant_id, at);
