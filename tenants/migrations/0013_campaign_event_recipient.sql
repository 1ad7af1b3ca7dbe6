-- A campaign email the mail server refuses after Kith committed it as sent (a 5xx or 4xx reply
-- to the message's data, which the sending engine reads only after its COMMIT: see
-- kith.tenants.campaigns.sending) has its 'sent' event taken back by recipient; erasing or
-- deleting recipients cascades along the same column.
CREATE INDEX campaign_events_recipient_idx ON campaign_events (recipient_id);
