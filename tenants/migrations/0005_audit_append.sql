-- Hash format 2: one round trip per audit entry in the common case.
--
-- The writer keeps the tenant's chain head (last seq and hash) in the process and sends the
-- whole entry, its HMAC computed over the head it expects, to audit_append(); the function
-- takes the chain lock, and inserts only if the head is still the expected one (and, when
-- asked, the subject key the diff was encrypted with still exists). Otherwise it returns the
-- real head and the writer recomputes: the lock is then held, so the second call succeeds.
--
-- Format 2 hashes the diff as the exact text the writer produced (diff_text), instead of
-- PostgreSQL's jsonb text (format 1), so the writer needs no round trip to learn it; `diff`
-- (jsonb, for reading) is derived from it, and verify checks the two still agree.
ALTER TABLE audit_log ADD COLUMN hash_format smallint NOT NULL DEFAULT 1, ADD COLUMN diff_text text;
ALTER TABLE audit_archive ADD COLUMN hash_format smallint NOT NULL DEFAULT 1, ADD COLUMN diff_text text;

CREATE FUNCTION audit_append(
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
    -- audit_head checks the schema belongs to tid and takes the chain lock until commit
    SELECT a.last_seq, a.last_hash INTO h_seq, h_hash FROM audit_head(tid) a;
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
