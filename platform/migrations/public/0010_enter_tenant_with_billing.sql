-- The door into a tenant also hands over the workspace's billing facts, so the read-only
-- check that every recorded change passes (kith.platform.billing.subscriptions.assert_writable)
-- needs no query of its own. Same lock, checks and search_path as kith_enter_tenant.
CREATE FUNCTION public.kith_enter_tenant_v2(tid bigint)
RETURNS TABLE (e_version integer, e_has_billing boolean, e_status text, e_trial_ends_at timestamptz,
               e_past_due_since timestamptz, e_stripe_subscription_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v integer;
BEGIN
    v := public.kith_enter_tenant(tid);
    -- a new statement, so a fresh snapshot: the billing row as committed now
    RETURN QUERY
        SELECT v, b.tenant_id IS NOT NULL, b.status, b.trial_ends_at, b.past_due_since, b.stripe_subscription_id
          FROM (SELECT 1) AS one LEFT JOIN public.billing_subscriptions AS b ON b.tenant_id = tid;
END
$$;
