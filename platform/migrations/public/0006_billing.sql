-- Billing: one subscription per workspace, the Stripe events received (each stored once,
-- in the same transaction as its effect) and a cache of invoices for the billing page.

-- The workspace's plan and billing state. Stripe is the record of what is paid; this row is
-- reconciled from the Stripe subscription object (never from the order events arrive in).
-- 'read_only' is not stored: it is past_due older than KITH_BILLING_GRACE_DAYS, computed on
-- read, so no job has to flip it on time.
CREATE TABLE public.billing_subscriptions (
    tenant_id               bigint PRIMARY KEY REFERENCES public.tenants (id) ON DELETE CASCADE,
    plan                    text NOT NULL,
    billing_interval        text NOT NULL DEFAULT 'monthly' CHECK (billing_interval IN ('monthly', 'yearly')),
    status                  text NOT NULL
                            CHECK (status IN ('trialing', 'active', 'past_due', 'suspended', 'cancelled')),
    provider                text NOT NULL CHECK (provider IN ('local', 'stripe')),
    trial_ends_at           timestamptz,
    past_due_since          timestamptz,
    cancelled_at            timestamptz,
    current_period_end      timestamptz,
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    seats                   integer NOT NULL DEFAULT 1 CHECK (seats >= 0),
    stripe_customer_id      text UNIQUE,
    stripe_subscription_id  text UNIQUE,
    stripe_item_id          text,
    -- set when the retention job deleted the workspace, so it runs once
    deleted_at              timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
-- the dunning, trial and retention jobs look rows up by state
CREATE INDEX billing_subscriptions_status_idx ON public.billing_subscriptions (status);

-- Every Stripe event received. The UNIQUE event id is inserted in the transaction that
-- applies the event, so a duplicate delivery conflicts and applies nothing.
CREATE TABLE public.billing_events (
    id            bigserial PRIMARY KEY,
    event_id      text NOT NULL UNIQUE,
    event_type    text NOT NULL,
    tenant_id     bigint REFERENCES public.tenants (id) ON DELETE SET NULL,
    created       timestamptz NOT NULL,  -- when Stripe created the event
    received_at   timestamptz NOT NULL DEFAULT now(),
    outcome       text NOT NULL CHECK (outcome IN ('applied', 'ignored')),
    detail        text NOT NULL DEFAULT ''
);
CREATE INDEX billing_events_tenant_idx ON public.billing_events (tenant_id, received_at);

-- Invoices as Stripe last reported them (fetched from the API when an invoice event arrives).
CREATE TABLE public.billing_invoices (
    stripe_invoice_id  text PRIMARY KEY,
    tenant_id          bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    number             text NOT NULL DEFAULT '',
    status             text NOT NULL,
    currency           text NOT NULL DEFAULT 'usd',
    amount_due         bigint NOT NULL DEFAULT 0,  -- in the currency's smallest unit
    amount_paid        bigint NOT NULL DEFAULT 0,
    hosted_invoice_url text NOT NULL DEFAULT '',
    created            timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_invoices_tenant_idx ON public.billing_invoices (tenant_id, created DESC);
