-- Email delivery claims a row (pending/failed -> sending) before talking to SMTP, so a
-- job that runs twice (arq delivers at least once) finds it taken and sends nothing.
ALTER TABLE public.outbox_emails DROP CONSTRAINT outbox_emails_status_check;
ALTER TABLE public.outbox_emails ADD CONSTRAINT outbox_emails_status_check
    CHECK (status IN ('pending', 'sending', 'outbox', 'sent', 'failed'));
