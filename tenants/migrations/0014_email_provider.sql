-- Where the workspace's campaign email goes (kith.tenants.campaigns.provider_settings): the
-- platform's provider, its own SMTP server, or its own Amazon SES account. One row at most;
-- no row is 'platform'. The SMTP password and the SES secret access key are kc1 tokens
-- (kith.platform.crypto, AES-GCM bound to "email_provider.<column>:<tenant id>"), re-encrypted by
-- `kith keys rotate`; the CHECKs keep plain text out. Switching kind clears the other kind's
-- columns, so a secret is never left behind for a provider the workspace no longer uses.
CREATE TABLE email_provider (
    id                    smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    kind                  text NOT NULL DEFAULT 'platform' CHECK (kind IN ('platform', 'smtp', 'ses')),
    smtp_host             text NOT NULL DEFAULT '',
    smtp_port             integer NOT NULL DEFAULT 587 CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_username         text NOT NULL DEFAULT '',
    smtp_password         text CHECK (smtp_password IS NULL OR starts_with(smtp_password, 'kc1:')),
    smtp_starttls         boolean NOT NULL DEFAULT true,
    ses_region            text NOT NULL DEFAULT '',
    ses_access_key_id     text NOT NULL DEFAULT '',
    ses_secret_access_key text CHECK (ses_secret_access_key IS NULL OR starts_with(ses_secret_access_key, 'kc1:')),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    updated_by_id         bigint,
    CHECK (kind <> 'smtp' OR smtp_host <> ''),
    CHECK (kind <> 'ses' OR (ses_region <> '' AND ses_access_key_id <> '' AND ses_secret_access_key IS NOT NULL))
);
