-- Service: support tickets. A ticket is a customer's request (a question, a fault, a complaint),
-- linked to the contact and company it came from, owned by the agent working on it (owner_id: the
-- permission engine's record scope applies as to every CRM record; NULL is an unassigned ticket in
-- the queue). Its conversation is `ticket_messages`: replies to the customer and internal notes.
--
-- Service levels: each priority has a first-response time and a resolution time in hours
-- (crm_settings.ticket_sla, editable by admins). The due times are stored on the ticket when it is
-- opened (and recomputed when its priority changes), so "overdue" is an indexed comparison with
-- now(), not a computation over every ticket.
CREATE TABLE tickets (
    id                      bigserial PRIMARY KEY,
    subject                 text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    description             text NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
    status                  text NOT NULL DEFAULT 'new'
                            CHECK (status IN ('new', 'open', 'pending', 'resolved', 'closed')),
    priority                text NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    channel                 text NOT NULL DEFAULT 'web' CHECK (channel IN ('email', 'phone', 'web', 'chat', 'other')),
    company_id              bigint REFERENCES companies (id) ON DELETE SET NULL,
    contact_id              bigint REFERENCES contacts (id) ON DELETE SET NULL,
    owner_id                bigint,
    tags                    text[] NOT NULL DEFAULT '{}',
    custom                  jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_response_due_at   timestamptz NOT NULL,
    resolution_due_at       timestamptz NOT NULL,
    first_responded_at      timestamptz,
    resolved_at             timestamptz,
    closed_at               timestamptz,
    last_activity_at        timestamptz,
    created_by_id           bigint,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (resolution_due_at >= first_response_due_at)
);
CREATE INDEX tickets_search_idx ON tickets USING gin (subject public.gin_trgm_ops);
CREATE INDEX tickets_owner_idx ON tickets (owner_id, id);
CREATE INDEX tickets_contact_idx ON tickets (contact_id, id) WHERE contact_id IS NOT NULL;
CREATE INDEX tickets_company_idx ON tickets (company_id, id) WHERE company_id IS NOT NULL;
-- the service queue: tickets still to be worked on, soonest due first
CREATE INDEX tickets_open_due_idx ON tickets (resolution_due_at, id) WHERE status IN ('new', 'open', 'pending');
CREATE INDEX tickets_subject_id_idx ON tickets (lower(subject), id);

CREATE TABLE ticket_messages (
    id          bigserial PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    -- reply: written to the customer; note: internal, for the team only
    kind        text NOT NULL CHECK (kind IN ('reply', 'note')),
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    author_id   bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- a reply emailed to the contact: the address it went to, and its delivery through the workspace's
    -- email provider ('' = not emailed; pending -> sending -> sent | failed, as the outbox's rows)
    email_to     text NOT NULL DEFAULT '',
    email_status text NOT NULL DEFAULT '' CHECK (email_status IN ('', 'pending', 'sending', 'sent', 'failed')),
    email_error  text NOT NULL DEFAULT '',
    emailed_at   timestamptz
);
CREATE INDEX ticket_messages_ticket_idx ON ticket_messages (ticket_id, id);
-- replies whose delivery job was lost (Redis down at the commit): the sweep finds them
CREATE INDEX ticket_messages_unsent_idx ON ticket_messages (created_at) WHERE email_status IN ('pending', 'failed');

-- hours per priority: {"urgent": [first response, resolution], ...}
ALTER TABLE crm_settings ADD COLUMN ticket_sla jsonb NOT NULL DEFAULT
    '{"urgent": [1, 4], "high": [4, 24], "normal": [8, 72], "low": [24, 168]}'::jsonb;

-- tickets get custom fields and background exports like the other lists
ALTER TABLE custom_fields DROP CONSTRAINT custom_fields_object_type_check,
    ADD CONSTRAINT custom_fields_object_type_check
        CHECK (object_type IN ('companies', 'contacts', 'leads', 'deals', 'tickets'));
ALTER TABLE export_files DROP CONSTRAINT export_files_object_type_check,
    ADD CONSTRAINT export_files_object_type_check
        CHECK (object_type IN ('companies', 'contacts', 'leads', 'deals', 'tickets'));
