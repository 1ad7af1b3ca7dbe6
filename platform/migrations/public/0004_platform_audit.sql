-- The platform's own audit log: identity events that belong to no workspace (a failed login
-- for an unknown email, a person with no workspace). Same chain mechanics as each tenant's
-- audit_log (tenants/migrations/0003_audit_log.sql), with tenant id 0 in the MAC and the lock.
-- In production the application's role should hold only SELECT and INSERT on it.
CREATE TABLE public.platform_audit (
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    at           timestamptz NOT NULL,
    actor_kind   text NOT NULL,
    actor_id     text NOT NULL DEFAULT '',
    token_id     bigint,
    actor_label  text NOT NULL DEFAULT '',
    ip           text NOT NULL DEFAULT '',
    user_agent   text NOT NULL DEFAULT '',
    request_id   text NOT NULL DEFAULT '',
    object_type  text NOT NULL,
    object_id    text NOT NULL DEFAULT '',
    action       text NOT NULL,
    diff         jsonb,
    prev_hash    text NOT NULL,
    hash         text NOT NULL,
    key_id       text NOT NULL
);
CREATE INDEX platform_audit_actor_idx ON public.platform_audit (actor_id, seq);
CREATE INDEX platform_audit_at_idx ON public.platform_audit USING brin (at);

CREATE FUNCTION public.platform_audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on %.% is refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit entries are never changed.';
END
$$;
-- Statement-level, so an UPDATE or DELETE is refused even when it matches no row.
CREATE TRIGGER platform_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON public.platform_audit
    FOR EACH STATEMENT EXECUTE FUNCTION public.platform_audit_refuse_change();

-- Lock (class 'kaud', key 0: tenant ids start at 1), then the head, read with a fresh snapshot.
CREATE FUNCTION public.platform_audit_head() RETURNS TABLE (last_seq bigint, last_hash text, entry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1801549156, 0);
    RETURN QUERY
        SELECT h.seq, h.hash, clock_timestamp() FROM (
            (SELECT p.seq, p.hash FROM public.platform_audit p ORDER BY p.seq DESC LIMIT 1)
            UNION ALL
            SELECT 0::bigint, ''::text
        ) h ORDER BY h.seq DESC LIMIT 1;
END
$$;
