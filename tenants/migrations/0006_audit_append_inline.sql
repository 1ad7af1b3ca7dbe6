-- audit_append() without the nested audit_head() call: the same checks, lock and head, read
-- inline, which saves a plpgsql call frame on every audited change (the hot path).
CREATE OR REPLACE FUNCTION audit_append(
    tid bigint, expected_seq bigint, expected_hash text,
    key_subject_type text, key_subject_id text, key_key_id text,
    p_at timestamptz, p_actor_kind text, p_actor_id text, p_token_id bigint, p_actor_label text,
    p_ip text, p_user_agent text, p_request_id text, p_object_type text, p_object_id text,
    p_action text, p_diff_text text, p_hash text, p_key_id text
) RETURNS TABLE (outcome text, last_seq bigint, last_hash text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    h_seq bigint;
    h_hash text;
BEGIN
    IF current_schema() IS DISTINCT FROM 't_' || tid::text THEN
        RAISE EXCEPTION 'audit entry for tenant % written in schema %', tid, current_schema();
    END IF;
    PERFORM pg_advisory_xact_lock(1801549156, tid::integer);
    SELECT l.seq, l.hash INTO h_seq, h_hash FROM audit_log l ORDER BY l.seq DESC LIMIT 1;
    IF h_seq IS NULL THEN  -- an empty log: it continues from the last archive checkpoint, or starts
        SELECT c.archived_through_seq, c.last_hash INTO h_seq, h_hash
          FROM audit_checkpoint c ORDER BY c.archived_through_seq DESC LIMIT 1;
        IF h_seq IS NULL THEN
            h_seq := 0;
            h_hash := '';
        END IF;
    END IF;
    IF key_key_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM subject_keys
         WHERE subject_type = key_subject_type AND subject_id = key_subject_id AND key_id = key_key_id
    ) THEN
        RETURN QUERY SELECT 'key'::text, h_seq, h_hash;
        RETURN;
    END IF;
    IF h_seq IS DISTINCT FROM expected_seq OR h_hash IS DISTINCT FROM expected_hash THEN
        RETURN QUERY SELECT 'stale'::text, h_seq, h_hash;
        RETURN;
    END IF;
    INSERT INTO audit_log (seq, at, actor_kind, actor_id, token_id, actor_label, ip, user_agent, request_id,
                           object_type, object_id, action, diff, prev_hash, hash, key_id, hash_format, diff_text)
    VALUES (expected_seq + 1, p_at, p_actor_kind, p_actor_id, p_token_id, p_actor_label, p_ip, p_user_agent,
            p_request_id, p_object_type, p_object_id, p_action, p_diff_text::jsonb, expected_hash, p_hash,
            p_key_id, 2, p_diff_text);
    RETURN QUERY SELECT 'ok'::text, expected_seq + 1, p_hash;
END
$$;
