-- The CRM core: companies, leads, pipelines and deals, activities and tasks, products and
-- orders, sales targets, the public customer pool, custom fields and saved views.
-- Runs with search_path set to the tenant's schema; public objects are qualified.
--
-- Conventions of this file: money is numeric(18,2) with a 3-letter currency beside it (never
-- float); times are timestamptz (UTC); dates without a time are date. Every record that a
-- person owns has owner_id (NULL = nobody: for companies and leads that is the pool).
-- tags are text[] with a GIN index; custom fields live in `custom` jsonb, keyed by the
-- field's key in custom_fields, with a GIN index for equality filters.
-- People (owner_id, created_by_id, assignee_id, ...) are public.identities ids WITHOUT a foreign
-- key: a key from every tenant schema to one public table makes deleting an identity lock every
-- referencing table of every tenant in one transaction (out of shared memory at a few hundred
-- tenants). The actions check that a person named is an active member. (The keys of 0001 and
-- 0002 stay: dropping them would take an exclusive lock on public.identities in every
-- provisioning; account deletion, when it comes, clears a person's references tenant by tenant.)

-- Custom fields, defined by tenant admins per object type. Values live in each record's
-- `custom` jsonb column (see kith.tenants.records.custom for the validation of each kind).
CREATE TABLE custom_fields (
    id           bigserial PRIMARY KEY,
    object_type  text NOT NULL CHECK (object_type IN ('companies', 'contacts', 'leads', 'deals')),
    key          text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,39}$'),
    label        text NOT NULL CHECK (length(label) BETWEEN 1 AND 80),
    kind         text NOT NULL CHECK (kind IN ('text', 'long_text', 'number', 'currency', 'date', 'select',
                                               'multi_select', 'boolean', 'url')),
    options      jsonb NOT NULL DEFAULT '[]'::jsonb,   -- the choices of select / multi_select
    required     boolean NOT NULL DEFAULT false,
    position     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (object_type, key)
);
CREATE UNIQUE INDEX custom_fields_label_key ON custom_fields (object_type, lower(label));

-- Saved list views: filters, sort, search and columns of a list, private to their owner or
-- shared with the workspace. definition = {"filters": [[field, op, value]], "sort": "-name",
-- "q": "", "columns": ["name", ...]}.
CREATE TABLE saved_views (
    id           bigserial PRIMARY KEY,
    object_type  text NOT NULL,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    owner_id     bigint,
    shared       boolean NOT NULL DEFAULT false,
    definition   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX saved_views_name_key ON saved_views (object_type, owner_id, lower(name));

-- Settings of the CRM inside this workspace: one row.
CREATE TABLE crm_settings (
    id                  boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- records nobody followed up within this many days go back to the pool (NULL: never)
    pool_reclaim_days   integer CHECK (pool_reclaim_days BETWEEN 1 AND 3650),
    -- how many pool records a member of a role may hold: {"sales": 50}; a role not named has no limit
    pool_claim_limits   jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO crm_settings (id) VALUES (true);

CREATE TABLE companies (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    domain            text NOT NULL DEFAULT '' CHECK (length(domain) <= 253),
    industry          text NOT NULL DEFAULT '' CHECK (length(industry) <= 100),
    size              text NOT NULL DEFAULT '' CHECK (size IN ('', '1-10', '11-50', '51-200', '201-1000',
                                                               '1001-5000', '5000+')),
    phone             text NOT NULL DEFAULT '' CHECK (length(phone) <= 50),
    address           text NOT NULL DEFAULT '' CHECK (length(address) <= 500),
    city              text NOT NULL DEFAULT '' CHECK (length(city) <= 100),
    country           text NOT NULL DEFAULT '' CHECK (country = '' OR country ~ '^[A-Z]{2}$'),
    notes             text NOT NULL DEFAULT '',
    owner_id          bigint,
    tags              text[] NOT NULL DEFAULT '{}',
    custom            jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- the public pool: owner_id IS NULL; pooled_at says since when (NULL for never owned)
    pooled_at         timestamptz,
    claimed_at        timestamptz,
    last_activity_at  timestamptz,
    created_by_id     bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX companies_search_idx ON companies
    USING gin ((name || ' ' || domain || ' ' || phone) public.gin_trgm_ops);
CREATE INDEX companies_name_id_idx ON companies (lower(name), id);
CREATE INDEX companies_owner_idx ON companies (owner_id, id);
CREATE INDEX companies_pool_idx ON companies (id) WHERE owner_id IS NULL;
CREATE INDEX companies_domain_idx ON companies (lower(domain)) WHERE domain <> '';
CREATE INDEX companies_tags_idx ON companies USING gin (tags);
CREATE INDEX companies_custom_idx ON companies USING gin (custom jsonb_path_ops);

-- Contacts gain a company, person fields, tags and custom fields. company_id refuses the
-- deletion of a company that still has contacts: the action asks what to do with them first.
ALTER TABLE contacts
    ADD COLUMN company_id        bigint REFERENCES companies (id) ON DELETE RESTRICT,
    ADD COLUMN title             text NOT NULL DEFAULT '' CHECK (length(title) <= 200),
    ADD COLUMN lifecycle_stage   text NOT NULL DEFAULT 'lead' CHECK (lifecycle_stage IN (
        'subscriber', 'lead', 'qualified', 'opportunity', 'customer', 'evangelist', 'other')),
    ADD COLUMN source            text NOT NULL DEFAULT '' CHECK (length(source) <= 100),
    ADD COLUMN tags              text[] NOT NULL DEFAULT '{}',
    ADD COLUMN custom            jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN last_activity_at  timestamptz;
CREATE INDEX contacts_company_idx ON contacts (company_id, id) WHERE company_id IS NOT NULL;
CREATE INDEX contacts_lifecycle_name_idx ON contacts (lifecycle_stage, lower(name), id);
CREATE INDEX contacts_tags_idx ON contacts USING gin (tags);
CREATE INDEX contacts_custom_idx ON contacts USING gin (custom jsonb_path_ops);
-- duplicate detection: normalized email and the digits of the phone
CREATE INDEX contacts_email_idx ON contacts (lower(email)) WHERE email <> '';
CREATE INDEX contacts_phone_digits_idx ON contacts (regexp_replace(phone, '[^0-9]', '', 'g')) WHERE phone <> '';

CREATE TABLE leads (
    id                    bigserial PRIMARY KEY,
    name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    company_name          text NOT NULL DEFAULT '' CHECK (length(company_name) <= 200),
    title                 text NOT NULL DEFAULT '' CHECK (length(title) <= 200),
    email                 text NOT NULL DEFAULT '' CHECK (length(email) <= 200),
    phone                 text NOT NULL DEFAULT '' CHECK (length(phone) <= 50),
    status                text NOT NULL DEFAULT 'new' CHECK (status IN (
        'new', 'contacted', 'qualified', 'unqualified', 'converted')),
    source                text NOT NULL DEFAULT '' CHECK (length(source) <= 100),
    notes                 text NOT NULL DEFAULT '',
    owner_id              bigint,
    tags                  text[] NOT NULL DEFAULT '{}',
    custom                jsonb NOT NULL DEFAULT '{}'::jsonb,
    pooled_at             timestamptz,
    claimed_at            timestamptz,
    last_activity_at      timestamptz,
    converted_at          timestamptz,
    converted_contact_id  bigint REFERENCES contacts (id) ON DELETE SET NULL,
    converted_company_id  bigint REFERENCES companies (id) ON DELETE SET NULL,
    converted_deal_id     bigint,  -- references deals, added below
    created_by_id         bigint,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leads_search_idx ON leads
    USING gin ((name || ' ' || email || ' ' || phone || ' ' || company_name) public.gin_trgm_ops);
CREATE INDEX leads_name_id_idx ON leads (lower(name), id);
CREATE INDEX leads_owner_idx ON leads (owner_id, id);
CREATE INDEX leads_pool_idx ON leads (id) WHERE owner_id IS NULL;
CREATE INDEX leads_status_idx ON leads (status, id);
CREATE INDEX leads_tags_idx ON leads USING gin (tags);
CREATE INDEX leads_custom_idx ON leads USING gin (custom jsonb_path_ops);
CREATE INDEX leads_email_idx ON leads (lower(email)) WHERE email <> '';

-- Pipelines and their ordered stages, editable by tenant admins. kind: open, won or lost;
-- probability is the stage's default chance of winning, used by the weighted pipeline.
CREATE TABLE pipelines (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    position    integer NOT NULL DEFAULT 0,
    is_default  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX pipelines_name_key ON pipelines (lower(name));
CREATE UNIQUE INDEX pipelines_one_default ON pipelines (is_default) WHERE is_default;

CREATE TABLE stages (
    id           bigserial PRIMARY KEY,
    pipeline_id  bigint NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    position     integer NOT NULL DEFAULT 0,
    probability  integer NOT NULL DEFAULT 0 CHECK (probability BETWEEN 0 AND 100),
    kind         text NOT NULL DEFAULT 'open' CHECK (kind IN ('open', 'won', 'lost')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX stages_name_key ON stages (pipeline_id, lower(name));
CREATE INDEX stages_pipeline_idx ON stages (pipeline_id, position);

CREATE TABLE deals (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    amount            numeric(18, 2) NOT NULL DEFAULT 0 CHECK (amount >= 0),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    expected_close    date,
    -- NULL: the stage's probability applies
    probability       integer CHECK (probability BETWEEN 0 AND 100),
    pipeline_id       bigint NOT NULL REFERENCES pipelines (id) ON DELETE RESTRICT,
    stage_id          bigint NOT NULL REFERENCES stages (id) ON DELETE RESTRICT,
    company_id        bigint REFERENCES companies (id) ON DELETE RESTRICT,
    contact_id        bigint REFERENCES contacts (id) ON DELETE SET NULL,
    owner_id          bigint,
    loss_reason       text NOT NULL DEFAULT '' CHECK (length(loss_reason) <= 500),
    closed_at         timestamptz,
    notes             text NOT NULL DEFAULT '',
    tags              text[] NOT NULL DEFAULT '{}',
    custom            jsonb NOT NULL DEFAULT '{}'::jsonb,
    last_activity_at  timestamptz,
    created_by_id     bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deals_search_idx ON deals USING gin (name public.gin_trgm_ops);
CREATE INDEX deals_name_id_idx ON deals (lower(name), id);
CREATE INDEX deals_owner_idx ON deals (owner_id, id);
CREATE INDEX deals_board_idx ON deals (pipeline_id, stage_id, id);
CREATE INDEX deals_company_idx ON deals (company_id, id) WHERE company_id IS NOT NULL;
CREATE INDEX deals_contact_idx ON deals (contact_id, id) WHERE contact_id IS NOT NULL;
CREATE INDEX deals_close_idx ON deals (expected_close, id);
CREATE INDEX deals_tags_idx ON deals USING gin (tags);
CREATE INDEX deals_custom_idx ON deals USING gin (custom jsonb_path_ops);
ALTER TABLE leads ADD CONSTRAINT leads_converted_deal_fk
    FOREIGN KEY (converted_deal_id) REFERENCES deals (id) ON DELETE SET NULL;

-- Every stage change of a deal, with its time and who made it.
CREATE TABLE deal_stage_changes (
    id             bigserial PRIMARY KEY,
    deal_id        bigint NOT NULL REFERENCES deals (id) ON DELETE CASCADE,
    from_stage_id  bigint REFERENCES stages (id) ON DELETE SET NULL,
    to_stage_id    bigint REFERENCES stages (id) ON DELETE SET NULL,
    changed_by_id  bigint,
    changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deal_stage_changes_deal_idx ON deal_stage_changes (deal_id, changed_at);

-- The timeline: calls, meetings, emails and notes people log, and events Kith records itself
-- (kind 'event': a stage change, a conversion, a claim, a return to the pool, a merge), with
-- the event's facts in `event`. An entry links to any of a company, contact, lead and deal;
-- each record's timeline is its links, newest first. A deleted record's link becomes NULL
-- and the entry stays on the other records' timelines.
CREATE TABLE activities (
    id                bigserial PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('call', 'meeting', 'email', 'note', 'event')),
    subject           text NOT NULL DEFAULT '' CHECK (length(subject) <= 200),
    body              text NOT NULL DEFAULT '' CHECK (length(body) <= 20000),
    occurred_at       timestamptz NOT NULL DEFAULT now(),
    duration_minutes  integer CHECK (duration_minutes BETWEEN 0 AND 1440),
    event             jsonb,
    company_id        bigint REFERENCES companies (id) ON DELETE SET NULL,
    contact_id        bigint REFERENCES contacts (id) ON DELETE SET NULL,
    lead_id           bigint REFERENCES leads (id) ON DELETE SET NULL,
    deal_id           bigint REFERENCES deals (id) ON DELETE SET NULL,
    created_by_id     bigint,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activities_company_idx ON activities (company_id, occurred_at DESC, id DESC) WHERE company_id IS NOT NULL;
CREATE INDEX activities_contact_idx ON activities (contact_id, occurred_at DESC, id DESC) WHERE contact_id IS NOT NULL;
CREATE INDEX activities_lead_idx ON activities (lead_id, occurred_at DESC, id DESC) WHERE lead_id IS NOT NULL;
CREATE INDEX activities_deal_idx ON activities (deal_id, occurred_at DESC, id DESC) WHERE deal_id IS NOT NULL;

CREATE TABLE tasks (
    id              bigserial PRIMARY KEY,
    title           text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    notes           text NOT NULL DEFAULT '' CHECK (length(notes) <= 5000),
    due_at          timestamptz,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done', 'cancelled')),
    assignee_id     bigint,
    company_id      bigint REFERENCES companies (id) ON DELETE SET NULL,
    contact_id      bigint REFERENCES contacts (id) ON DELETE SET NULL,
    lead_id         bigint REFERENCES leads (id) ON DELETE SET NULL,
    deal_id         bigint REFERENCES deals (id) ON DELETE SET NULL,
    reminded_at     timestamptz,
    completed_at    timestamptz,
    created_by_id   bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_assignee_idx ON tasks (assignee_id, status, due_at);
-- the reminder job's query: open tasks due, not yet reminded
CREATE INDEX tasks_due_idx ON tasks (due_at) WHERE status = 'open' AND reminded_at IS NULL;
CREATE INDEX tasks_company_idx ON tasks (company_id) WHERE company_id IS NOT NULL;
CREATE INDEX tasks_contact_idx ON tasks (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX tasks_lead_idx ON tasks (lead_id) WHERE lead_id IS NOT NULL;
CREATE INDEX tasks_deal_idx ON tasks (deal_id) WHERE deal_id IS NOT NULL;

CREATE TABLE products (
    id           bigserial PRIMARY KEY,
    sku          text NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description  text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
    unit_price   numeric(18, 2) NOT NULL CHECK (unit_price >= 0),
    currency     text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX products_sku_key ON products (lower(sku));
CREATE INDEX products_search_idx ON products USING gin ((sku || ' ' || name) public.gin_trgm_ops);

-- Sales orders. Totals are computed by the action from the lines (and kept here, so lists
-- and purchase histories need no aggregation); a company with orders cannot be deleted.
CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    number          text NOT NULL CHECK (length(number) BETWEEN 1 AND 40),
    company_id      bigint REFERENCES companies (id) ON DELETE RESTRICT,
    contact_id      bigint REFERENCES contacts (id) ON DELETE SET NULL,
    deal_id         bigint REFERENCES deals (id) ON DELETE SET NULL,
    owner_id        bigint,
    status          text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'confirmed', 'fulfilled', 'cancelled')),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    order_date      date NOT NULL DEFAULT CURRENT_DATE,
    subtotal        numeric(18, 2) NOT NULL DEFAULT 0,
    discount_total  numeric(18, 2) NOT NULL DEFAULT 0,
    total           numeric(18, 2) NOT NULL DEFAULT 0,
    notes           text NOT NULL DEFAULT '' CHECK (length(notes) <= 5000),
    created_by_id   bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX orders_number_key ON orders (lower(number));
CREATE INDEX orders_company_idx ON orders (company_id, order_date DESC) WHERE company_id IS NOT NULL;
CREATE INDEX orders_contact_idx ON orders (contact_id, order_date DESC) WHERE contact_id IS NOT NULL;
CREATE INDEX orders_owner_idx ON orders (owner_id, id);

CREATE TABLE order_lines (
    id                bigserial PRIMARY KEY,
    order_id          bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position          integer NOT NULL DEFAULT 0,
    product_id        bigint REFERENCES products (id) ON DELETE SET NULL,
    description       text NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
    quantity          numeric(12, 3) NOT NULL CHECK (quantity > 0),
    unit_price        numeric(18, 2) NOT NULL CHECK (unit_price >= 0),
    discount_percent  numeric(5, 2) NOT NULL DEFAULT 0 CHECK (discount_percent BETWEEN 0 AND 100),
    line_total        numeric(18, 2) NOT NULL
);
CREATE INDEX order_lines_order_idx ON order_lines (order_id, position);

-- A quota per member or per team for a month or a quarter (period_start is its first day),
-- measured on won deals or on confirmed and fulfilled orders.
CREATE TABLE sales_targets (
    id            bigserial PRIMARY KEY,
    identity_id   bigint,
    team_id       bigint REFERENCES teams (id) ON DELETE CASCADE,
    period_kind   text NOT NULL CHECK (period_kind IN ('month', 'quarter')),
    period_start  date NOT NULL,
    measure       text NOT NULL DEFAULT 'won_deals' CHECK (measure IN ('won_deals', 'orders')),
    amount        numeric(18, 2) NOT NULL CHECK (amount > 0),
    currency      text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((identity_id IS NULL) <> (team_id IS NULL)),
    CHECK (period_start = date_trunc(period_kind, period_start)::date)
);
CREATE UNIQUE INDEX sales_targets_key ON sales_targets
    (coalesce(identity_id, 0), coalesce(team_id, 0), period_kind, period_start, measure);

-- What a merge of duplicates did: the record kept, the one merged into it (its values at the
-- time) and how many related records moved.
CREATE TABLE record_merges (
    id             bigserial PRIMARY KEY,
    object_type    text NOT NULL,
    kept_id        bigint NOT NULL,
    merged_id      bigint NOT NULL,
    merged_values  jsonb NOT NULL,
    moved          jsonb NOT NULL DEFAULT '{}'::jsonb,
    merged_by_id   bigint,
    merged_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX record_merges_kept_idx ON record_merges (object_type, kept_id);

-- Every workspace starts with one pipeline whose stages it may rename, reorder and extend.
INSERT INTO pipelines (name, position, is_default) VALUES ('Sales', 0, true);
INSERT INTO stages (pipeline_id, name, position, probability, kind)
SELECT p.id, s.name, s.position, s.probability, s.kind
FROM pipelines p, (VALUES ('Qualification', 0, 10, 'open'), ('Needs analysis', 1, 30, 'open'),
                          ('Proposal', 2, 60, 'open'), ('Negotiation', 3, 80, 'open'),
                          ('Won', 4, 100, 'won'), ('Lost', 5, 0, 'lost')) AS s(name, position, probability, kind);
