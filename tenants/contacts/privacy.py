"""Privacy for contacts: marketing consent history, data-subject export, and erasure.

Each action takes an Actor and works inside `acting_as(actor)`, so the role's permissions,
record scope and hidden fields apply here as everywhere else; each is audited in its own
transaction, with ids and field names only, never the person's values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.audit.entries import entries_about
from kith.platform.audit.log import raw_connection
from kith.platform.audit.subjects import destroy_subject_key
from kith.tenants.contacts.queries import CONSENT_FIELDS, FIELDS, OBJECT, load_for_change, visible_row

EXPORT_FORMAT = "kith.contact-export/1"
ERASED_NAME = "Erased contact {id}"
# What a consent change is attributed to when the caller names no source: the channel it came through.
DEFAULT_SOURCES = {"token": "api", "user": "web form", "job": "import", "operator": "support operator",
                   "system": "system"}


def default_consent_source(actor: Actor) -> str:
    """The source recorded for a consent change when none was given."""
    return DEFAULT_SOURCES.get(actor.kind, actor.kind)


async def record_consent_event(session: TenantSession, contact_id: int, state: str, source: str,
                               at: datetime) -> None:
    """Append one row to the contact's consent history (in the caller's transaction)."""
    actor = session.actor
    await session.tx.execute_query(
        "INSERT INTO consent_events (contact_id, state, source, at, actor_kind, actor_id, actor)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [contact_id, state, source, at, actor.kind,
         "" if actor.identity_id is None else str(actor.identity_id), actor.label],
    )


def _json_ready(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}


def _hidden_keys(session: TenantSession) -> frozenset[str]:
    hidden = set(session.policy.hidden_fields(OBJECT))
    if "marketing_consent" in hidden:
        hidden |= set(CONSENT_FIELDS)
    return frozenset(hidden)


async def export_contact(actor: Actor, contact_id: int) -> dict[str, Any]:
    """Everything Kith holds about one contact, as the actor's role may see it.

    The record, its consent state and history, the audit entries about it (personal values
    decrypted, "[erased]" where the key was destroyed) and the emails Kith queued to its
    address in this workspace, and the service tickets they opened with their conversations.
    Hidden fields are left out everywhere, audit diffs included.
    Needs 'contacts: export'; a contact outside the role's record scope is ContactNotFound.
    The export is audited ("contact.export") with counts only.
    """
    async with acting_as(actor) as session:
        session.require(OBJECT, "export")
        row = await load_for_change(session, contact_id)
        hidden = _hidden_keys(session)
        record = _json_ready({k: v for k, v in visible_row(session, row).items() if k not in hidden})
        history: list[dict[str, Any]] = []
        if "marketing_consent" not in hidden:
            events = await session.tx.execute_query_dict(
                "SELECT state, source, at, actor_kind, actor FROM consent_events WHERE contact_id = $1"
                " ORDER BY at, id", [contact_id])
            history = [_json_ready(dict(e)) for e in events]
        audit = []
        for entry in await entries_about(session.tx, OBJECT, contact_id):
            diff = entry.diff
            if isinstance(diff, dict):
                diff = {k: v for k, v in diff.items() if k not in hidden}
            audit.append({"seq": entry.seq, "at": entry.at.isoformat(), "action": entry.action,
                          "actor_kind": entry.actor_kind, "actor": entry.actor_label, "diff": diff})
        emails: list[dict[str, Any]] = []
        if row["email"]:
            found = await session.tx.execute_query_dict(
                "SELECT id, kind, to_address, subject, body_text, status, created_at, sent_at"
                " FROM public.outbox_emails WHERE tenant_id = $1 AND " + _ADDRESS_MATCH + " ORDER BY id",
                [actor.tenant_id, row["email"]])
            for email in found:
                item = _json_ready(dict(email))
                if "email" in hidden:
                    item.pop("to_address")
                emails.append(item)
        tickets = await _tickets_of(session, contact_id)
        export = {
            "format": EXPORT_FORMAT,
            "exported_at": datetime.now(UTC).isoformat(),
            "contact_id": contact_id,
            "contact": record,
            "consent": {**{k: record[k] for k in CONSENT_FIELDS if k in record}, "history": history}
            if "marketing_consent" not in hidden else None,
            "audit_entries": audit,
            "emails": emails,
            "tickets": tickets,
            "fields_withheld": sorted(set(hidden) & {*FIELDS, *CONSENT_FIELDS}),
        }
        await session.audit("contact.export", OBJECT, contact_id, {
            "format": EXPORT_FORMAT, "audit_entries": len(audit), "consent_events": len(history),
            "emails": len(emails), "tickets": len(tickets), "fields_withheld": export["fields_withheld"],
        })
    return export


async def _tickets_of(session: TenantSession, contact_id: int) -> list[dict[str, Any]]:
    """The contact's service tickets the actor may see, each with its conversation, for the export."""
    if not session.policy.can("tickets", "view"):
        return []
    params: list[Any] = [contact_id]
    owners = session.policy.owner_ids("tickets")
    scope = ""
    if owners is not None:
        params.append(sorted(owners))
        scope = " AND owner_id = ANY($2::bigint[])"
    hidden = session.policy.hidden_fields("tickets")
    rows = await session.tx.execute_query_dict(
        "SELECT t.id, t.subject, t.description, t.status, t.priority, t.channel, t.created_at, t.resolved_at,"
        " coalesce((SELECT jsonb_agg(jsonb_build_object('kind', m.kind, 'body', m.body, 'at', m.created_at)"
        " ORDER BY m.id) FROM ticket_messages m WHERE m.ticket_id = t.id), '[]'::jsonb) AS messages"
        " FROM tickets t WHERE t.contact_id = $1" + scope + " ORDER BY t.id", params)
    found = []
    for row in rows:
        item = _json_ready({k: v for k, v in dict(row).items() if k not in hidden})
        messages = item.get("messages")
        item["messages"] = json.loads(messages) if isinstance(messages, str) else messages
        found.append(item)
    return found


def export_json(export: dict[str, Any]) -> bytes:
    """The export as the JSON file a person downloads (UTF-8, any script kept readable)."""
    return json.dumps(export, ensure_ascii=False, indent=2, default=str).encode()


# An outbox address is either the bare address or "Name <address>"; compared without case and
# without LIKE, so the '_' of an address is not a wildcard.
_ADDRESS_MATCH = ("(lower(to_address) = lower($2)"
                  " OR right(lower(to_address), length($2) + 2) = '<' || lower($2) || '>')")


async def erase_contact(actor: Actor, contact_id: int) -> dict[str, Any]:
    """Erase a contact on request: pseudonymize it everywhere Kith holds it, in one transaction.

    The record keeps its id and owner but becomes "Erased contact <id>" with email, phone,
    company, notes and consent cleared; its consent history is removed; its subject key is
    destroyed, so the personal values in its audit diffs read "[erased]" while the chain still
    verifies; emails queued to its address in this workspace are removed when unsent and
    scrubbed when already sent; the service tickets they opened lose their subject, description and
    messages (the tickets' audit entries were encrypted with the contact's key). Needs 'contacts:
    delete'; audited as "contact.erase" with field names and counts only.
    """
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        before = await load_for_change(session, contact_id, lock=True)
        rows = await session.tx.execute_query_dict(
            "UPDATE contacts SET name = $2, email = '', phone = '', company_name = '', notes = '',"
            " title = '', source = '', tags = '{}', custom = '{}',"
            " marketing_consent = 'unknown', consent_source = '', consent_at = NULL, unsubscribed_at = NULL,"
            " erased_at = now(), updated_at = now() WHERE id = $1 RETURNING *",
            [contact_id, ERASED_NAME.format(id=contact_id)])
        cleared = [f for f in ("name", *FIELDS[1:], *CONSENT_FIELDS, "title", "source", "tags", "custom")
                   if before.get(f) not in (None, "", "unknown", [], {}, "{}")]
        events = await session.tx.execute_query_dict(
            "WITH gone AS (DELETE FROM consent_events WHERE contact_id = $1 RETURNING 1)"
            " SELECT count(*) AS n FROM gone", [contact_id])
        # campaign recipients keep the address and merge values they were sent with: scrubbed too
        await session.tx.execute_query(
            "UPDATE campaign_recipients SET email = '', merge = '{}'::jsonb WHERE contact_id = $1", [contact_id])
        # the values an import replaced or wrote, kept for its undo, are personal data too
        await session.tx.execute_query(
            "DELETE FROM import_changes c USING imports i WHERE c.record_id = $1 AND i.id = c.import_id"
            " AND i.object_type = 'contacts'", [contact_id])
        # the person's service tickets: what they asked and what was written to and about them; a
        # reply not emailed yet is never sent (the delivery claims pending and failed ones only)
        tickets = await session.tx.execute_query_dict(
            "WITH scrubbed AS (UPDATE tickets SET subject = '[erased]', description = '', tags = '{}',"
            " custom = '{}', updated_at = now() WHERE contact_id = $1 RETURNING id),"
            " messages AS (UPDATE ticket_messages SET body = '[erased]', email_to = '',"
            " email_status = CASE WHEN email_status IN ('pending', 'failed') THEN '' ELSE email_status END,"
            " email_error = ''"
            " WHERE ticket_id IN (SELECT id FROM scrubbed)"
            " RETURNING 1)"
            " SELECT (SELECT count(*) FROM scrubbed) AS tickets, (SELECT count(*) FROM messages) AS messages",
            [contact_id])
        conn = raw_connection(session.tx)
        destroyed = await destroy_subject_key(conn, (OBJECT, contact_id))
        removed = scrubbed = 0
        if before["email"]:
            removed = len(await conn.fetch(
                "DELETE FROM public.outbox_emails WHERE tenant_id = $1 AND status IN ('pending', 'failed') AND "
                + _ADDRESS_MATCH + " RETURNING id", actor.tenant_id, before["email"]))
            scrubbed = len(await conn.fetch(
                "UPDATE public.outbox_emails SET to_address = '', subject = '[erased]', body_text = '[erased]',"
                " error = '' WHERE tenant_id = $1 AND " + _ADDRESS_MATCH + " RETURNING id",
                actor.tenant_id, before["email"]))
        await session.audit("contact.erase", OBJECT, contact_id, {
            "cleared": cleared, "consent_events_removed": int(events[0]["n"]), "subject_key_destroyed": destroyed,
            "emails_removed": removed, "emails_scrubbed": scrubbed,
            "tickets_scrubbed": int(tickets[0]["tickets"]), "ticket_messages_scrubbed": int(tickets[0]["messages"]),
        })
        return visible_row(session, rows[0])
