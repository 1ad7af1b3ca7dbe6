-- Email verification by signed link, and complimentary ("comped") plans.

-- When the person proved they read mail at their address (NULL: not yet). Following a
-- verification link sets it, and so does accepting an invitation (its link was mailed there).
ALTER TABLE public.identities ADD COLUMN email_verified_at timestamptz;

-- People who already accepted an invitation proved their address that way.
UPDATE public.identities i SET email_verified_at = v.accepted_at
  FROM (SELECT accepted_by, min(accepted_at) AS accepted_at FROM public.invitations
         WHERE accepted_by IS NOT NULL GROUP BY accepted_by) v
 WHERE v.accepted_by = i.id AND i.email_verified_at IS NULL;

-- One row per emailed link; the link carries a random token of which only a keyed hash
-- (HMAC-SHA256 with KITH_SECRET_KEY) is stored. `email` is the address the link was sent to:
-- a link proves that address only, so it stops working if the identity's email changes.
CREATE TABLE public.email_verifications (
    id            bigserial PRIMARY KEY,
    identity_id   bigint NOT NULL REFERENCES public.identities (id) ON DELETE CASCADE,
    email         text NOT NULL,
    token_hash    text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
-- "how many links were sent to this person in the last hour?" (the resend limit)
CREATE INDEX email_verifications_identity_idx ON public.email_verifications (identity_id, created_at DESC);

-- A plan given by support without payment, until this time (NULL: not comped). Only for
-- workspaces without a Stripe subscription, whose row Stripe's webhooks would overwrite.
ALTER TABLE public.billing_subscriptions ADD COLUMN comped_until timestamptz;
