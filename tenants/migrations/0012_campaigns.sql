-- Email marketing (kith.tenants.campaigns): segments, templates, campaigns, one row per recipient,
-- engagement events and the workspace's suppression list. Runs with search_path set to the
-- tenant's schema; public objects are qualified.
--
-- The database decides what is sent: a campaign's recipients are frozen into campaign_recipients
-- when it starts, and a worker sends one recipient inside a transaction that holds that row's
-- lock and marks it sent; the transaction commits right after the provider accepted the message.
-- A worker killed at any point before that commit leaves the row pending (its lock dies with
-- the connection), so the next worker sends it; only a kill between the provider's "accepted"
-- and the COMMIT leaving the socket (microseconds) could repeat one email.

-- Saved dynamic filters over contacts. definition = {"filters": [[field, op, value], ...],
-- "company": [[field, op, value], ...], "deal_stage": <stage id or null>, "engagement":
-- {"campaign_id": id, "event": "opened" | "clicked" | "not_opened"} or null}.
CREATE TABLE segments (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    definition     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by_id  bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX segments_name_key ON segments (lower(name));

CREATE TABLE email_templates (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    subject        text NOT NULL CHECK (length(subject) BETWEEN 1 AND 300),
    html_body      text NOT NULL DEFAULT '' CHECK (length(html_body) <= 500000),
    text_body      text NOT NULL DEFAULT '' CHECK (length(text_body) <= 200000),
    created_by_id  bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX email_templates_name_key ON email_templates (lower(name));

-- A campaign copies its template's subject and bodies when it is created or edited as a draft,
-- so editing a template never changes a campaign that is sending.
CREATE TABLE campaigns (
    id                 bigserial PRIMARY KEY,
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    status             text NOT NULL DEFAULT 'draft' CHECK (status IN (
        'draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled')),
    segment_id         bigint REFERENCES segments (id) ON DELETE RESTRICT,
    template_id        bigint REFERENCES email_templates (id) ON DELETE SET NULL,
    subject            text NOT NULL DEFAULT '' CHECK (length(subject) <= 300),
    html_body          text NOT NULL DEFAULT '',
    text_body          text NOT NULL DEFAULT '',
    from_name          text NOT NULL DEFAULT '' CHECK (length(from_name) <= 120),
    from_email         text NOT NULL DEFAULT '' CHECK (length(from_email) <= 254),
    reply_to           text NOT NULL DEFAULT '' CHECK (length(reply_to) <= 254),
    scheduled_at       timestamptz,          -- when a scheduled campaign starts (UTC)
    started_at         timestamptz,          -- when its recipients were frozen
    finished_at        timestamptz,
    paused_reason      text NOT NULL DEFAULT '',
    -- the next time a worker may pick it up again after a provider refused (back-off)
    retry_at           timestamptz,
    failures           integer NOT NULL DEFAULT 0,
    recipients_total   integer NOT NULL DEFAULT 0,
    -- who scheduled or started it: a scheduled campaign's recipients are chosen within their scope
    started_by_id      bigint,
    created_by_id      bigint,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_due_idx ON campaigns (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX campaigns_sending_idx ON campaigns (id) WHERE status = 'sending';

-- One row per recipient, frozen when the campaign starts: who, at which address, with which
-- merge values. status: pending -> sent | failed | suppressed (never sent: unsubscribed,
-- bounced, complained or without consent when the row's turn came).
CREATE TABLE campaign_recipients (
    id               bigserial PRIMARY KEY,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id       bigint REFERENCES contacts (id) ON DELETE SET NULL,
    email            text NOT NULL,
    merge            jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    attempts         integer NOT NULL DEFAULT 0,
    message_id       text NOT NULL DEFAULT '',
    error            text NOT NULL DEFAULT '',
    sent_at          timestamptz,
    delivered_at     timestamptz,
    opened_at        timestamptz,
    clicked_at       timestamptz,
    bounced_at       timestamptz,
    complained_at    timestamptz,
    unsubscribed_at  timestamptz,
    UNIQUE (campaign_id, contact_id)
);
CREATE INDEX campaign_recipients_pending_idx ON campaign_recipients (campaign_id, id) WHERE status = 'pending';
CREATE INDEX campaign_recipients_contact_idx ON campaign_recipients (contact_id);
CREATE INDEX campaign_recipients_message_idx ON campaign_recipients (message_id) WHERE message_id <> '';
CREATE INDEX campaign_recipients_sent_idx ON campaign_recipients (sent_at) WHERE sent_at IS NOT NULL;

-- What happened to each email, for the report's chart over time and the contact's timeline.
CREATE TABLE campaign_events (
    id             bigserial PRIMARY KEY,
    campaign_id    bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    recipient_id   bigint REFERENCES campaign_recipients (id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('sent', 'delivered', 'opened', 'clicked', 'bounced', 'complained',
                                                 'unsubscribed', 'failed')),
    at             timestamptz NOT NULL DEFAULT now(),
    detail         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX campaign_events_campaign_idx ON campaign_events (campaign_id, at);

-- Addresses never sent marketing email again in this workspace, whatever the contact says.
CREATE TABLE email_suppressions (
    email       text PRIMARY KEY,            -- lowercased
    reason      text NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'manual')),
    source      text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);
