-- Privacy: marketing consent on contacts with its history, erasure, and the per-person keys
-- that make crypto-shredding of audit diffs possible.
-- Runs with search_path set to the tenant's schema; public objects are qualified.

-- Consent to marketing, as it stands now; every change is also a row in consent_events.
-- unsubscribed_at is when the person last withdrew (an unsubscribe link, a request), and is
-- cleared when consent is granted again. erased_at marks a contact pseudonymized on request.
ALTER TABLE contacts
    ADD COLUMN marketing_consent text NOT NULL DEFAULT 'unknown'
        CHECK (marketing_consent IN ('unknown', 'granted', 'withdrawn')),
    ADD COLUMN consent_source   text NOT NULL DEFAULT '' CHECK (length(consent_source) <= 100),
    ADD COLUMN consent_at       timestamptz,
    ADD COLUMN unsubscribed_at  timestamptz,
    ADD COLUMN erased_at        timestamptz;

-- The history of a contact's consent: what was recorded, from where, when, and by whom
-- (an actor label such as a member's email, a token or a job). A contact deleted or erased
-- takes its history with it: there is nobody left to prove consent for.
CREATE TABLE consent_events (
    id          bigserial PRIMARY KEY,
    contact_id  bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    state       text NOT NULL CHECK (state IN ('unknown', 'granted', 'withdrawn')),
    source      text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now(),
    actor_kind  text NOT NULL DEFAULT '',
    actor_id    text NOT NULL DEFAULT '',
    actor       text NOT NULL DEFAULT ''
);
CREATE INDEX consent_events_contact_idx ON consent_events (contact_id, at);

-- One random 256-bit key per data subject (a contact), wrapped with the platform keyring
-- (KITH_ENCRYPTION_KEYS, which never reaches the database). Personal values in audit diffs
-- are encrypted with it before they are hashed into the chain; erasure deletes the row, so
-- those values become unreadable while every entry still verifies. key_id is random and
-- unique, named inside each encrypted value, so a key made after an erasure never opens
-- values written under the destroyed one.
CREATE TABLE subject_keys (
    subject_type  text NOT NULL,
    subject_id    text NOT NULL,
    key_id        text NOT NULL UNIQUE,
    wrapped_key   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_type, subject_id)
);
