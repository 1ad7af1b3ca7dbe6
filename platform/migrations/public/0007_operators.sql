-- Support operators: platform accounts, separate from the people of workspaces, with
-- mandatory TOTP two-factor authentication; their sessions; and impersonation sessions,
-- through which alone an operator reaches a workspace's pages.

CREATE TABLE public.operators (
    id                 bigserial PRIMARY KEY,
    email              text NOT NULL,
    display_name       text NOT NULL DEFAULT '',
    password_hash      text NOT NULL,
    -- encrypted with kith.platform.crypto, bound to "operators.totp_secret:<id>"; NULL means no
    -- second factor, and an operator without one cannot sign in at all
    totp_secret        text,
    -- set by the first correct code: the enrolment printed by `kith ops create-operator` worked
    totp_confirmed_at  timestamptz,
    -- the last TOTP time-step accepted, so a code never works twice
    totp_last_step     bigint,
    enabled            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_login_at      timestamptz
);
CREATE UNIQUE INDEX operators_email_key ON public.operators (lower(email));

-- One row per signed-in browser, and per half-signed-in one (stage 'password': the password
-- was right, the code is still owed; it grants nothing but a try at the code).
CREATE TABLE public.operator_sessions (
    id            bigserial PRIMARY KEY,
    token_hash    text NOT NULL UNIQUE,
    operator_id   bigint NOT NULL REFERENCES public.operators (id) ON DELETE CASCADE,
    stage         text NOT NULL CHECK (stage IN ('password', 'active')),
    attempts      integer NOT NULL DEFAULT 0,
    ip            text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX operator_sessions_operator_idx ON public.operator_sessions (operator_id);
CREATE INDEX operator_sessions_expires_idx ON public.operator_sessions (expires_at);

-- An operator acting as a member of a workspace: time-boxed, with a reason. Rows are kept
-- after they end (the history of who looked where, and why).
CREATE TABLE public.impersonation_sessions (
    id                   bigserial PRIMARY KEY,
    token_hash           text NOT NULL UNIQUE,
    operator_id          bigint NOT NULL REFERENCES public.operators (id),
    -- the operator's console session: signing out of the console ends the impersonation too
    operator_session_id  bigint REFERENCES public.operator_sessions (id) ON DELETE SET NULL,
    tenant_id            bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    identity_id          bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    reason               text NOT NULL CHECK (length(btrim(reason)) > 0),
    started_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    ended_at             timestamptz,
    end_reason           text CHECK (end_reason IN ('ended', 'signed_out'))
);
CREATE INDEX impersonation_sessions_operator_idx ON public.impersonation_sessions (operator_id, started_at DESC);
CREATE INDEX impersonation_sessions_tenant_idx ON public.impersonation_sessions (tenant_id, started_at DESC);
