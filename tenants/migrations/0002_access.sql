-- Permissions inside a tenant: custom roles, teams, and record ownership.
-- Runs with search_path set to the tenant's schema; public objects are qualified.

-- Custom roles only: built-in roles are declared in code (kith.platform.access.rules),
-- so a change to them reaches every tenant without a migration. Memberships name a role
-- by key (public.memberships.role); the key never changes when the role is renamed.
CREATE TABLE roles (
    id             bigserial PRIMARY KEY,
    key            text NOT NULL UNIQUE CHECK (key ~ '^custom-[a-z0-9-]{1,60}$'),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    grants         jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"contacts": ["view", "edit"]}
    workspace      jsonb NOT NULL DEFAULT '[]'::jsonb,  -- ["manage_campaigns"]
    record_scope   jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"contacts": "own" | "team" | "all"}
    hidden_fields  jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {"contacts": ["phone"]}
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- names are unique regardless of case, so two roles never read the same in a select
CREATE UNIQUE INDEX roles_name_key ON roles (lower(name));

CREATE TABLE teams (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX teams_name_key ON teams (lower(name));

CREATE TABLE team_members (
    team_id      bigint NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    identity_id  bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    is_manager   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (team_id, identity_id)
);
-- load_policy finds an actor's teams by identity
CREATE INDEX team_members_identity_idx ON team_members (identity_id);

-- Record ownership for own/team scopes; existing contacts belong to whoever created them.
ALTER TABLE contacts ADD COLUMN owner_id bigint REFERENCES public.identities (id) ON DELETE SET NULL;
UPDATE contacts SET owner_id = created_by_id;
CREATE INDEX contacts_owner_idx ON contacts (owner_id, id);
