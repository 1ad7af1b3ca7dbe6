-- The tenant's audit log: append-only, hash-chained, one gapless sequence per tenant.
-- Runs with search_path set to the tenant's schema.
--
-- Each entry's hash is HMAC-SHA256(KITH_AUDIT_KEY, canonical JSON of its fields and the
-- previous entry's hash), computed by the application: the key never reaches the database,
-- so someone with SQL access alone can change rows but cannot make them verify again.
--
-- Append-only twice over: the triggers below refuse UPDATE, DELETE and TRUNCATE for every
-- role (superusers included, unless they disable the trigger), and in production the
-- application's role should hold only SELECT and INSERT on audit_log / audit_archive /
-- audit_checkpoint (plus EXECUTE on audit_archive_through), with the tables owned by the
-- migration role. In dev and test Kith connects as a superuser, so only the trigger applies.
CREATE TABLE audit_log (
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
-- The viewer filters by object and actor newest first; `at` grows with seq, so a BRIN index
-- answers date ranges for almost nothing per insert.
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, seq);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, seq);
CREATE INDEX audit_log_at_idx ON audit_log USING brin (at);

-- Entries moved out of audit_log by the retention job, unchanged (same columns, same hashes),
-- so the archived part of the chain still verifies.
CREATE TABLE audit_archive (LIKE audit_log INCLUDING CONSTRAINTS INCLUDING DEFAULTS);
ALTER TABLE audit_archive ADD PRIMARY KEY (seq);

-- One row per retention run: entries up to archived_through_seq left audit_log; last_hash is
-- that entry's hash. mac = HMAC(key, the checkpoint's fields), so a checkpoint cannot be forged
-- to hide removed entries, and the chain verifies from it even once an archive is exported.
CREATE TABLE audit_checkpoint (
    id                    bigserial PRIMARY KEY,
    archived_through_seq  bigint NOT NULL,
    last_hash             text NOT NULL,
    archived_rows         bigint NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    key_id                text NOT NULL,
    mac                   text NOT NULL
);

CREATE TABLE audit_settings (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    retention_days  integer NOT NULL DEFAULT 2555 CHECK (retention_days BETWEEN 30 AND 36500),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_settings DEFAULT VALUES;

-- Refuses every change to audit rows. The only exception is the retention move made by
-- audit_archive_through() below, which sets kith.audit_archiving for its own statement.
-- Trade-off: a role that may DELETE from audit_log could set that flag itself, which is why
-- production's application role must not hold DELETE; even then, rows leave audit_log only
-- into audit_archive (the function moves, it never destroys) or with the trigger disabled,
-- and either way `kith audit verify` names the first entry that is missing or altered.
CREATE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_log'
       AND current_setting('kith.audit_archiving', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit log is append-only: % on %.% is refused', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit entries are never changed; old ones are archived by the retention job.';
END
$$;

-- Statement-level, so an UPDATE or DELETE is refused even when it matches no row.
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_archive_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_archive
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoint
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The head of the chain for the next append: takes the tenant's audit lock (held until the
-- transaction ends, so appends are serialized per tenant and seq stays gapless), then returns
-- the last seq and hash (from the latest checkpoint when everything was archived) and the
-- entry's time. Volatile plpgsql: its query takes a fresh snapshot after the lock is granted,
-- so it sees the entry the previous lock holder committed. The lock class 'kaud' differs from
-- the tenant lock ('kith') and the migration lock ('kmig'). The schema check refuses an actor
-- of one tenant appending inside another tenant's scope.
CREATE FUNCTION audit_head(tid bigint) RETURNS TABLE (last_seq bigint, last_hash text, entry_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF current_schema() IS DISTINCT FROM 't_' || tid::text THEN
        RAISE EXCEPTION 'audit entry for tenant % written in schema %', tid, current_schema();
    END IF;
    PERFORM pg_advisory_xact_lock(1801549156, tid::integer);
    RETURN QUERY
        SELECT h.seq, h.hash, clock_timestamp() FROM (
            (SELECT l.seq, l.hash FROM audit_log l ORDER BY l.seq DESC LIMIT 1)
            UNION ALL
            (SELECT c.archived_through_seq, c.last_hash FROM audit_checkpoint c
              ORDER BY c.archived_through_seq DESC LIMIT 1)
            UNION ALL
            SELECT 0::bigint, ''::text
        ) h ORDER BY h.seq DESC LIMIT 1;
END
$$;

-- The retention move: entries with seq <= through_seq go from audit_log to audit_archive in
-- one statement, and a checkpoint (whose mac the job computed with the key) is recorded.
-- SECURITY DEFINER so that production's application role needs EXECUTE on this function, not
-- DELETE on audit_log; search_path is pinned to this tenant's schema at creation.
CREATE FUNCTION audit_archive_through(tid bigint, through_seq bigint, expected_hash text, cp_key_id text, cp_mac text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    found_hash text;
    moved bigint;
BEGIN
    IF current_schema() IS DISTINCT FROM 't_' || tid::text THEN
        RAISE EXCEPTION 'audit archive for tenant % run in schema %', tid, current_schema();
    END IF;
    PERFORM pg_advisory_xact_lock(1801549156, tid::integer);
    SELECT hash INTO found_hash FROM audit_log WHERE seq = through_seq;
    IF found_hash IS DISTINCT FROM expected_hash THEN
        RAISE EXCEPTION 'audit entry % is not the one the checkpoint describes', through_seq;
    END IF;
    PERFORM set_config('kith.audit_archiving', 'on', true);
    WITH gone AS (DELETE FROM audit_log WHERE seq <= through_seq RETURNING *)
    INSERT INTO audit_archive SELECT * FROM gone;
    GET DIAGNOSTICS moved = ROW_COUNT;
    PERFORM set_config('kith.audit_archiving', 'off', true);
    INSERT INTO audit_checkpoint (archived_through_seq, last_hash, archived_rows, key_id, mac)
        VALUES (through_seq, expected_hash, moved, cp_key_id, cp_mac);
    RETURN moved;
END
$$;
