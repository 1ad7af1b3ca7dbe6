-- Tenant administration: invitations, member deactivation, password resets, workspace settings.

-- An invitation is a row; the emailed link carries a random token of which only a keyed
-- hash (HMAC-SHA256 with KITH_SECRET_KEY) is stored, so neither a database reader nor a
-- guesser can make a working link. Single use: accepted_at and revoked_at are set once.
CREATE TABLE public.invitations (
    id            bigserial PRIMARY KEY,
    tenant_id     bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    email         text NOT NULL,
    role          text NOT NULL,
    token_hash    text NOT NULL UNIQUE,
    invited_by    bigint REFERENCES public.identities (id) ON DELETE SET NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    accepted_at   timestamptz,
    accepted_by   bigint REFERENCES public.identities (id) ON DELETE SET NULL,
    revoked_at    timestamptz,
    CHECK (accepted_at IS NULL OR revoked_at IS NULL)
);
-- the members page lists a workspace's pending invitations; re-inviting finds the old one
CREATE INDEX invitations_pending_idx ON public.invitations (tenant_id, lower(email))
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

-- When a member was deactivated (is_active stays the flag every lookup reads).
ALTER TABLE public.memberships ADD COLUMN deactivated_at timestamptz;

CREATE TABLE public.password_resets (
    id            bigserial PRIMARY KEY,
    identity_id   bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    token_hash    text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
-- "how many resets were sent to this person in the last hour?" (the per-email limit)
CREATE INDEX password_resets_identity_idx ON public.password_resets (identity_id, created_at DESC);

-- Workspace settings. The logo bytes live in their own table, so the tenant row the edge
-- reads on every request stays small; logo_updated_at says whether there is one and
-- busts browser caches when it changes.
ALTER TABLE public.tenants
    ADD COLUMN locale                text NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'zh-CN')),
    ADD COLUMN time_zone             text NOT NULL DEFAULT 'UTC',
    ADD COLUMN default_currency      text NOT NULL DEFAULT 'USD' CHECK (default_currency ~ '^[A-Z]{3}$'),
    ADD COLUMN default_phone_region  text CHECK (default_phone_region ~ '^[A-Z]{2}$'),
    ADD COLUMN logo_updated_at       timestamptz;

CREATE TABLE public.tenant_logos (
    tenant_id     bigint PRIMARY KEY REFERENCES public.tenants (id) ON DELETE CASCADE,
    content_type  text NOT NULL CHECK (content_type IN ('image/png', 'image/jpeg', 'image/webp')),
    data          bytea NOT NULL CHECK (octet_length(data) <= 262144),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
