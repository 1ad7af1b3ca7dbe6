-- Account security: sign-in throttling, TOTP two-factor authentication, recovery codes,
-- the half-signed-in state between password and code, session "last seen", and a
-- workspace switch that makes two-factor authentication mandatory for its members.

-- One row per throttled key (a normalised email, or a client IP): a fixed window of
-- failures and, once too many, a lock. Counted in the database so every web process sees
-- the same numbers; one row per key keeps the table as small as the set of recent keys.
CREATE TABLE public.login_throttles (
    scope              text NOT NULL CHECK (scope IN ('email', 'ip')),
    key                text NOT NULL,
    failures           integer NOT NULL DEFAULT 0,
    window_started_at  timestamptz NOT NULL DEFAULT now(),
    locked_until       timestamptz,
    PRIMARY KEY (scope, key)
);
-- old rows are swept by age
CREATE INDEX login_throttles_window_idx ON public.login_throttles (window_started_at);

ALTER TABLE public.identities
    ADD COLUMN totp_secret          text,
    ADD COLUMN totp_pending_secret  text,
    ADD COLUMN totp_enabled_at      timestamptz,
    ADD COLUMN totp_last_step       bigint;

-- Single-use codes that stand in for a TOTP code; only their SHA-256 is kept (they carry
-- 80 random bits, so a fast hash cannot be searched back).
CREATE TABLE public.recovery_codes (
    id           bigserial PRIMARY KEY,
    identity_id  bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    code_hash    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    used_at      timestamptz,
    UNIQUE (identity_id, code_hash)
);

-- Password accepted, second factor still owed: a short-lived, server-side record named by
-- a random cookie. It is not a session: nothing but the code page accepts it.
CREATE TABLE public.login_challenges (
    id           bigserial PRIMARY KEY,
    token_hash   text NOT NULL UNIQUE,
    identity_id  bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    next_url     text NOT NULL DEFAULT '',
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX login_challenges_identity_idx ON public.login_challenges (identity_id);

ALTER TABLE public.web_sessions ADD COLUMN last_seen_at timestamptz;
UPDATE public.web_sessions SET last_seen_at = created_at;
ALTER TABLE public.web_sessions ALTER COLUMN last_seen_at SET NOT NULL,
                                ALTER COLUMN last_seen_at SET DEFAULT now();

ALTER TABLE public.tenants ADD COLUMN require_2fa boolean NOT NULL DEFAULT false;
