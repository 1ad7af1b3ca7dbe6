-- The application's database role (DATABASE_URL) apart from the role that owns the schemas
-- (DATABASE_DIRECT_URL, which runs `kith migrate`, backups and restores).
--
-- The application role owns nothing: it gets SELECT, INSERT, UPDATE and DELETE on the tables
-- of public and of every tenant schema, but only SELECT and INSERT on the audit tables
-- (public.platform_audit; each schema's audit_log, audit_archive, audit_checkpoint), and no
-- TRUNCATE, no DDL, no right to disable a trigger. What it needs that takes an owner (making a
-- tenant's schema at signup, dropping a deleted workspace's schema) goes through the SECURITY
-- DEFINER functions below, each of which checks the tenant's state first.
--
-- `kith migrate` fills kith_schema_setup: the tenant DDL at the latest version (so that the
-- functions can build a schema without the migration files) and the application role's name
-- (read by connecting with DATABASE_URL). Where both URLs name the same role (dev, or a
-- deployment without the split), app_role stays '' and every grant below is skipped.
CREATE TABLE public.kith_schema_setup (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    tenant_version integer NOT NULL DEFAULT 0,
    tenant_ddl     text NOT NULL DEFAULT '',
    app_role       text NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO public.kith_schema_setup DEFAULT VALUES;

-- Grants the application role its rights on one schema's tables and sequences (run as the
-- owner: by `kith migrate`, after a restore, and inside the functions below).
CREATE FUNCTION public.kith_grant_app(p_schema text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    r text;
    t text;
BEGIN
    SELECT app_role INTO r FROM public.kith_schema_setup;
    IF coalesce(r, '') = '' OR r = current_user THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', p_schema, r);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', p_schema, r);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO %I', p_schema, r);
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = p_schema AND c.relkind IN ('r', 'p')
               AND c.relname IN ('audit_log', 'audit_archive', 'audit_checkpoint', 'platform_audit') LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I.%I FROM %I', p_schema, t, r);
    END LOOP;
    IF p_schema = 'public' THEN
        -- what the owner's functions execute and the migration bookkeeping: read-only
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON public.kith_schema_setup, public.schema_migrations'
                       ' FROM %I', r);
        EXECUTE format('GRANT EXECUTE ON FUNCTION public.kith_create_tenant_schema(bigint),'
                       ' public.kith_drop_tenant_schema(bigint) TO %I', r);
    END IF;
END $$;

-- Signup: the tenant row (status 'provisioning', no schema yet) is made by the caller in the
-- same transaction; this builds its schema from the stored DDL, owned by the owner role, and
-- returns the schema's version.
CREATE FUNCTION public.kith_create_tenant_schema(p_tenant bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    s text := 't_' || p_tenant;
    setup public.kith_schema_setup%ROWTYPE;
BEGIN
    PERFORM 1 FROM public.tenants WHERE id = p_tenant AND status = 'provisioning' AND schema_name = '' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % is not waiting for its schema', p_tenant;
    END IF;
    SELECT * INTO setup FROM public.kith_schema_setup;
    IF setup.tenant_version = 0 THEN
        RAISE EXCEPTION 'no tenant DDL stored: run `kith migrate` first';
    END IF;
    EXECUTE format('CREATE SCHEMA %I', s);
    PERFORM set_config('search_path', quote_ident(s) || ', pg_temp', true);  -- pg_temp last: no shadowing
    EXECUTE setup.tenant_ddl;
    PERFORM set_config('search_path', 'pg_catalog, public, pg_temp', true);
    PERFORM public.kith_grant_app(s);
    RETURN setup.tenant_version;
END $$;

-- Retention: drops the schema of a workspace already marked deleted (in the same transaction).
CREATE FUNCTION public.kith_drop_tenant_schema(p_tenant bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM 1 FROM public.tenants WHERE id = p_tenant AND status = 'deleted';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % is not deleted; its schema stays', p_tenant;
    END IF;
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', 't_' || p_tenant);
END $$;

REVOKE ALL ON FUNCTION public.kith_create_tenant_schema(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.kith_drop_tenant_schema(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.kith_grant_app(text) FROM PUBLIC;
