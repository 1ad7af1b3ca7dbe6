-- A membership's role becomes a role key: a built-in role ('owner', 'admin', 'manager',
-- 'sales', 'support', 'read_only', declared in kith.platform.access.rules) or a custom
-- role's key from the tenant's `roles` table. Which keys exist differs per tenant, so no
-- CHECK can hold it; an unknown key grants nothing (the policy fails closed).
ALTER TABLE public.memberships DROP CONSTRAINT IF EXISTS memberships_role_check;
-- 'member' was the foundation's everyday role: people working on their own records.
UPDATE public.memberships SET role = 'sales' WHERE role = 'member';
ALTER TABLE public.memberships ALTER COLUMN role SET DEFAULT 'sales';
-- "how many members use this role?" (a role in use cannot be deleted)
CREATE INDEX memberships_tenant_role_idx ON public.memberships (tenant_id, role);
