"""Email templates as workspace records: list, read, create, change, delete, preview, test send.

Templates belong to the workspace's marketing (object type "email_templates", a catalogue: every
built-in role views them, owners, admins and managers maintain them). Every change is checked
with `check_template` against the workspace's contact custom fields and audited
("email_template.create|update|delete") in its transaction; a template that cannot be used is
refused with each problem at its field (422), a taken name with 409.

A preview fills a template in with a contact the actor may see, through the same record scope
and field rules as the contacts pages: a field hidden from the actor's role renders as the
template's default, never its value; a contact outside the scope is "no such contact" (404).
A test send fills it in with the actor's own name and address and sends it to them alone,
through the campaign provider (kith.tenants.campaigns.providers), so what arrives is what a
campaign would send, except that links are not tracked and the unsubscribe link leads back
to the template.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kith.platform.access.actor import Actor
from kith.platform.access.session import TenantSession, acting_as
from kith.platform.config import get_settings
from kith.tenants.campaigns.templates import (
    TemplateError,
    TemplateProblem,
    field_names,
    fields_used,
    merge_values,
    render,
    template_problems,
)
from kith.tenants.contacts.queries import ContactNotFound, audit_disclosed, load_for_change, visible_row
from kith.tenants.records.custom import load_custom_fields
from kith.tenants.records.refusals import RecordsRefusal

OBJECT = "email_templates"
CONTACTS = "contacts"
MAX_LIST = 500
_COLUMNS = ("name", "subject", "html_body", "text_body")
# what a preview's unsubscribe link points at: nowhere (the preview is not an email)
PREVIEW_UNSUBSCRIBE_URL = "#unsubscribe"


class EmailTemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120, description="Unique in the workspace (any case).")
    subject: str = Field(min_length=1, max_length=300, description="Merge fields allowed: Hello {{ first_name }}")
    html_body: str = Field(default="", max_length=500_000, description=(
        "HTML body (sandboxed Jinja2; merge values are HTML-escaped). An unsubscribe link is added unless "
        "it uses {{ unsubscribe_url }}."))
    text_body: str = Field(default="", max_length=200_000, description=(
        "Plain-text body; empty: the text of the HTML body is sent."))


class EmailTemplatePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=120)
    subject: str | None = Field(default=None, min_length=1, max_length=300)
    html_body: str | None = Field(default=None, max_length=500_000)
    text_body: str | None = Field(default=None, max_length=200_000)


@dataclass(frozen=True)
class Preview:
    """A template filled in for one contact (or for nobody: every merge field at its default)."""

    subject: str
    html: str
    text: str
    contact_id: int | None
    contact_name: str


class InvalidTemplate(RecordsRefusal):
    """A template check_template refuses (422); `problems` keep part, line and a translatable message."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        fields: dict[str, str] = {}
        for p in problems:
            fields[p.field] = f"{fields[p.field]}\n{p.message}" if p.field in fields else p.message
        super().__init__(422, "invalid_template", "; ".join(p.message for p in problems), fields=fields)
        self.problems = problems


def _not_found() -> RecordsRefusal:
    return RecordsRefusal(404, "not_found", "There is no such email template.")


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise RecordsRefusal(422, "invalid_input", "A template needs a name.", fields={"name": "A name is required."})
    return cleaned


async def _custom_keys(session: TenantSession) -> list[str]:
    return [f.key for f in await load_custom_fields(session.tx, CONTACTS)]


async def _check(session: TenantSession, values: dict[str, Any]) -> None:
    """Refuse a template that has no body or that cannot be filled in, with each problem at its field."""
    if not values["subject"].strip():
        raise RecordsRefusal(422, "invalid_input", "A template needs a subject.",
                             fields={"subject": "A subject is required."})
    if not values["html_body"].strip() and not values["text_body"].strip():
        message = "A template needs an HTML body or a text body."
        raise RecordsRefusal(422, "invalid_template", message, fields={"html_body": message})
    problems = template_problems(values["subject"], values["html_body"], values["text_body"],
                                 custom_keys=await _custom_keys(session))
    if problems:
        raise InvalidTemplate(problems)


async def _check_name(session: TenantSession, name: str, template_id: int | None = None) -> None:
    rows = await session.tx.execute_query_dict(
        "SELECT id FROM email_templates WHERE lower(name) = lower($1) AND id IS DISTINCT FROM $2",
        [name, template_id])
    if rows:
        message = f"The name '{name}' is already used by another template."
        raise RecordsRefusal(409, "conflict", message, fields={"name": message})


async def _load(session: TenantSession, template_id: int, *, lock: bool = False) -> dict[str, Any]:
    rows = await session.tx.execute_query_dict(
        "SELECT * FROM email_templates WHERE id = $1" + (" FOR UPDATE" if lock else ""), [int(template_id)])
    if not rows:
        raise _not_found()
    return rows[0]


def _visible(session: TenantSession, row: dict[str, Any]) -> dict[str, Any]:
    return session.visible(OBJECT, row)


async def list_templates(actor: Actor, *, q: str = "", limit: int = 100) -> list[dict[str, Any]]:
    """Templates by name (case-insensitive), without their bodies; `q` matches any part of the name
    or subject, any script."""
    limit = max(1, min(limit, MAX_LIST))
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        hidden = session.policy.hidden_fields(OBJECT)
        params: list[Any] = []
        where = ""
        searched = [f for f in ("name", "subject") if f not in hidden]
        if q.strip():
            escaped = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
            # a hidden field is not searched: a match would reveal it
            where = " WHERE " + (" OR ".join(f"{f} ILIKE $1" for f in searched) if searched else "false")
        params.append(limit)
        rows = await session.tx.execute_query_dict(
            "SELECT id, name, subject, created_by_id, created_at, updated_at FROM email_templates" + where
            + f" ORDER BY lower(name), id LIMIT ${len(params)}", params)
        return [_visible(session, row) for row in rows]


async def get_template(actor: Actor, template_id: int) -> dict[str, Any]:
    """One template as the actor may see it."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return _visible(session, await _load(session, template_id))


async def create_template(actor: Actor, data: EmailTemplateIn) -> dict[str, Any]:
    """Save a new template after checking that it can be filled in (InvalidTemplate otherwise)."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "create")
        session.require_fields(OBJECT, _COLUMNS)
        values = {**data.model_dump(), "name": _clean_name(data.name)}
        await _check(session, values)
        await _check_name(session, values["name"])
        rows = await session.tx.execute_query_dict(
            "INSERT INTO email_templates (name, subject, html_body, text_body, created_by_id)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING *", [*(values[c] for c in _COLUMNS), actor.identity_id])
        row = rows[0]
        await session.audit("email_template.create", OBJECT, row["id"],
                            {c: [None, values[c]] for c in _COLUMNS if values[c]})
        return _visible(session, row)


async def update_template(actor: Actor, template_id: int, changes: EmailTemplatePatch) -> dict[str, Any]:
    """Change some parts of a template; the whole result is checked again. Campaigns keep their own
    copy of subject and bodies, so a change never alters a campaign already made from it."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit")
        given = {k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None}
        session.require_fields(OBJECT, given)
        if "name" in given:
            given["name"] = _clean_name(given["name"])
        before = await _load(session, template_id, lock=True)
        diff = {k: [before[k], v] for k, v in given.items() if before[k] != v}
        if not diff:
            return _visible(session, before)
        after = {c: given.get(c, before[c]) for c in _COLUMNS}
        if diff.keys() & {"subject", "html_body", "text_body"}:
            await _check(session, after)
        if "name" in diff:
            await _check_name(session, after["name"], before["id"])
        assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(diff, start=2))
        rows = await session.tx.execute_query_dict(
            f"UPDATE email_templates SET {assignments}, updated_at = now() WHERE id = $1 RETURNING *",
            [before["id"], *(new for _, new in diff.values())])
        await session.audit("email_template.update", OBJECT, before["id"], diff)
        return _visible(session, rows[0])


async def delete_template(actor: Actor, template_id: int) -> None:
    """Delete a template. Campaigns made from it keep their copy (their template_id becomes empty)."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "delete")
        before = await _load(session, template_id, lock=True)
        await session.tx.execute_query("DELETE FROM email_templates WHERE id = $1", [before["id"]])
        await session.audit("email_template.delete", OBJECT, before["id"],
                            {c: [before[c], None] for c in _COLUMNS if before[c]})


async def merge_field_names(actor: Actor) -> list[str]:
    """The names the actor's templates may use: the standard merge fields and custom_<key> per
    contact custom field (for the editor's list of fields)."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return field_names(await _custom_keys(session))


async def _workspace(session: TenantSession) -> tuple[str, str]:
    rows = await session.tx.execute_query_dict("SELECT name, locale FROM public.tenants WHERE id = $1",
                                               [session.actor.tenant_id])
    return (str(rows[0]["name"]), str(rows[0]["locale"] or "en")) if rows else ("", "en")


def _filled(subject: str, html: str, text: str, merge: dict[str, Any], *, unsubscribe_url: str,
            locale: str) -> tuple[str, str, str]:
    try:
        return render(subject, html, text, merge, unsubscribe_url=unsubscribe_url, open_pixel_url=None,
                      click_url=None, locale=locale)
    except TemplateError as exc:
        raise RecordsRefusal(422, "template_error", exc.message) from None


async def preview_in(session: TenantSession, subject: str, html: str, text: str,
                     contact_id: int | None) -> Preview:
    """Fill in a template (saved or being edited) for `contact_id` as the actor may see that contact;
    None fills in nothing (every merge field shows its default)."""
    name, locale = await _workspace(session)
    contact: dict[str, Any] = {}
    custom_fields: list[Any] = []
    if contact_id is not None:
        session.require(CONTACTS, "view")
        try:
            contact = visible_row(session, await load_for_change(session, int(contact_id)))
        except ContactNotFound:
            raise RecordsRefusal(404, "not_found", "There is no such contact.",
                                 fields={"contact_id": "There is no such contact."}) from None
        custom_fields = await load_custom_fields(session.tx, CONTACTS)
        if "email" in fields_used(subject, html, text):
            # the preview shows the address to the actor: a read of a sensitive field
            await audit_disclosed(session, [contact], listing=False)
    merge = merge_values(contact, custom_fields, workspace_name=name)
    out = _filled(subject, html, text, merge, unsubscribe_url=PREVIEW_UNSUBSCRIBE_URL, locale=locale)
    return Preview(*out, contact_id=int(contact_id) if contact_id is not None else None,
                   contact_name=str(contact.get("name") or ""))


async def preview_draft(actor: Actor, subject: str, html: str, text: str, contact_id: int | None) -> Preview:
    """Preview content being edited (not saved yet): rendering changes nothing, so 'view' suffices."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        return await preview_in(session, subject, html, text, contact_id)


async def preview_template(actor: Actor, template_id: int, contact_id: int | None) -> Preview:
    """Preview a saved template for a contact the actor may see (404 for one they may not)."""
    async with acting_as(actor) as session:
        session.require(OBJECT, "view")
        row = await _load(session, template_id)
        session.require_fields(OBJECT, ("subject", "html_body", "text_body"))
        return await preview_in(session, row["subject"], row["html_body"], row["text_body"], contact_id)


@dataclass(frozen=True)
class SentTest:
    """What a test send did: to whom, with which subject, and the message id the provider gave."""

    to: str
    subject: str
    message_id: str
    provider: str


def member_sender(identity_email: str) -> tuple[str, str]:
    """(from_email, from name) of an email a member sends (a test send, a ticket reply): MAIL_FROM
    when a provider would take it, else the member's own address (the dev default
    no-reply@kith.localhost is a reserved name)."""
    from kith.tenants.campaigns.providers import ProviderError, sender_address  # beside this module

    name, address = parseaddr(get_settings().mail_from)
    try:
        sender_address(address)
    except ProviderError:
        return identity_email, ""
    return address, name


async def send_test(actor: Actor, *, template_id: int | None = None,
                    content: tuple[str, str, str] | None = None) -> SentTest:
    """Send a template to the actor alone, filled in with their own name and address.

    `content` is (subject, html, text) being written; without it the saved template `template_id`
    is sent. With a `template_id` it needs 'email_templates: edit', without (a new template's
    page) 'email_templates: create'. Links are not tracked and the unsubscribe link leads back
    to the template in Kith. The email is sent inside the transaction that audits it
    (email_template.test_send), so a refused email leaves no entry (and the dev outbox's row
    commits with it). A provider's refusal is a RecordsRefusal 502 with its message; a template
    that cannot be filled in, 422.
    """
    from kith.tenants.campaigns.provider_settings import provider_factory_in  # beside this module
    from kith.tenants.campaigns.providers import OutgoingEmail, ProviderError

    if actor.identity_id is None:
        raise RecordsRefusal(422, "invalid_input", "A test send goes to a person; this caller has no address.")
    settings = get_settings()
    async with acting_as(actor) as session:
        session.require(OBJECT, "edit" if template_id is not None else "create")
        if content is not None:
            subject, html, text = content
            if template_id is not None:
                await _load(session, template_id)  # 404 for a template that is gone
        elif template_id is not None:
            row = await _load(session, template_id)
            subject, html, text = row["subject"], row["html_body"], row["text_body"]
        else:
            raise ValueError("send_test needs a template_id or content")
        await _check(session, {"subject": subject, "html_body": html, "text_body": text})
        people = await session.tx.execute_query_dict(
            "SELECT i.email, i.display_name, t.name AS workspace, t.slug, t.locale FROM public.identities i,"
            " public.tenants t WHERE i.id = $1 AND t.id = $2", [actor.identity_id, actor.tenant_id])
        if not people:
            raise RecordsRefusal(422, "invalid_input", "A test send goes to a person; this caller has no address.")
        me = people[0]
        back = f"{settings.base_url}/t/{me['slug']}/campaigns/templates"
        back += f"/{template_id}" if template_id is not None else "/new"
        merge = merge_values({"name": me["display_name"] or str(me["email"]).split("@")[0], "email": me["email"]},
                             workspace_name=me["workspace"])
        filled_subject, filled_html, filled_text = _filled(subject, html, text, merge, unsubscribe_url=back,
                                                           locale=me["locale"] or "en")
        label = "[测试] " if me["locale"] == "zh-CN" else "[Test] "
        from_email, from_name = member_sender(str(me["email"]))
        email = OutgoingEmail(
            to=str(me["email"]), from_email=from_email, from_name=from_name or str(me["workspace"]), reply_to="",
            subject=(label + filled_subject)[:300], html=filled_html, text=filled_text,
            headers={"X-Kith-Test-Send": f"{actor.tenant_id}.{template_id or 'new'}"},
            message_id=f"<test.t{actor.tenant_id}.i{actor.identity_id}.{secrets.token_hex(8)}@kith>")
        provider = (await provider_factory_in(session.tx, actor.tenant_id))()  # the workspace's own, if it has one
        try:
            provider_id = await provider.send(email)
        except ProviderError as exc:
            raise RecordsRefusal(502, "provider_refused",
                                 f"The email provider refused the test email: {exc.message}") from None
        finally:
            await provider.close()
        await session.audit("email_template.test_send", OBJECT, template_id, {"to": [None, "self"]})
    return SentTest(to=email.to, subject=email.subject, message_id=provider_id or email.message_id,
                    provider=provider.name)
