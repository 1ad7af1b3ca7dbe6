-- The platform's own tables, in the public schema. Tenant CRM data never lives here.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

CREATE TABLE public.tenants (
    id             bigserial PRIMARY KEY,
    slug           text NOT NULL,
    name           text NOT NULL,
    schema_name    text NOT NULL,
    status         text NOT NULL DEFAULT 'provisioning'
                   CHECK (status IN ('provisioning', 'active', 'suspended', 'deleted')),
    canary         boolean NOT NULL DEFAULT false,
    schema_version integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tenants_slug_key ON public.tenants (slug);
CREATE UNIQUE INDEX tenants_schema_key ON public.tenants (schema_name);
-- "which tenants are behind?" reads this index only
CREATE INDEX tenants_schema_version_idx ON public.tenants (schema_version) WHERE status <> 'deleted';

CREATE TABLE public.identities (
    id             bigserial PRIMARY KEY,
    email          text NOT NULL,
    display_name   text NOT NULL DEFAULT '',
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz
);
CREATE UNIQUE INDEX identities_email_key ON public.identities (lower(email));

CREATE TABLE public.memberships (
    id           bigserial PRIMARY KEY,
    tenant_id    bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    identity_id  bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    role         text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, identity_id)
);
CREATE INDEX memberships_identity_idx ON public.memberships (identity_id);

CREATE TABLE public.web_sessions (
    id            bigserial PRIMARY KEY,
    token_hash    text NOT NULL UNIQUE,
    identity_id   bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    ip            text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT ''
);
CREATE INDEX web_sessions_identity_idx ON public.web_sessions (identity_id);

CREATE TABLE public.api_tokens (
    id            bigserial PRIMARY KEY,
    tenant_id     bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    identity_id   bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    name          text NOT NULL,
    prefix        text NOT NULL,
    token_hash    text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_tenant_idx ON public.api_tokens (tenant_id, identity_id);

CREATE TABLE public.outbox_emails (
    id           bigserial PRIMARY KEY,
    tenant_id    bigint REFERENCES public.tenants (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    dedupe_key   text NOT NULL,
    to_address   text NOT NULL,
    subject      text NOT NULL,
    body_text    text NOT NULL,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'outbox', 'sent', 'failed')),
    error        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    UNIQUE (dedupe_key)
);
CREATE INDEX outbox_emails_tenant_idx ON public.outbox_emails (tenant_id, created_at DESC);

-- The door into a tenant's schema. Volatile plpgsql: each statement takes a fresh
-- snapshot, so the version read below is the one committed when the shared lock was
-- granted (a migration of this tenant holds the exclusive lock while it runs).
CREATE FUNCTION public.kith_enter_tenant(tid bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v integer;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1802073192, tid::integer);
    SELECT schema_version INTO v FROM public.tenants
     WHERE id = tid AND status IN ('active', 'suspended');
    IF v IS NULL THEN
        RAISE EXCEPTION 'tenant % is not available', tid;
    END IF;
    PERFORM set_config('search_path', 't_' || tid::text, true);
    RETURN v;
END
$$;
