-- Runs with search_path set to the tenant's schema; public objects are qualified.
CREATE TABLE contacts (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email         text NOT NULL DEFAULT '',
    phone         text NOT NULL DEFAULT '',
    company_name  text NOT NULL DEFAULT '',
    notes         text NOT NULL DEFAULT '',
    created_by_id bigint REFERENCES public.identities (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Substring search (Chinese included) on name, email, phone and company through one
-- trigram index; ILIKE '%...%' uses it and the row recheck keeps results exact.
CREATE INDEX contacts_search_idx ON contacts
    USING gin ((name || ' ' || email || ' ' || phone || ' ' || company_name) public.gin_trgm_ops);
CREATE INDEX contacts_name_id_idx ON contacts (lower(name), id);
