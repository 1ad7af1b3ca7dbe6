"""The welcome email a workspace's owner receives after signing up."""

from __future__ import annotations

from arq.worker import Retry

from kith.jobs.tenant_job import JobContext, tenant_job
from kith.platform.access.actor import Actor
from kith.platform.access.session import acting_as
from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.email.delivery import EmailDeliveryError, deliver, queue_email
from kith.platform.identity.models import Identity, Membership
from kith.platform.tenancy.models import Tenant
from kith.tenants.contacts.models import Contact

# Seconds before retry n (arq's job_try), so a mail server that is down gets time to recover.
RETRY_BACKOFF_S = (10, 60, 300, 900)


def welcome_text(*, display_name: str, workspace: str, contact_count: int, contacts_url: str) -> str:
    """The plain-text body of the welcome email."""
    contacts = "1 contact" if contact_count == 1 else f"{contact_count} contacts"
    return (
        f"Hi {display_name},\n\n"
        f"Welcome to Kith! Your workspace \"{workspace}\" is ready.\n\n"
        f"It has {contacts} so far. Add and find the people you work with here:\n"
        f"{contacts_url}\n\n"
        "The Kith team\n"
    )


@tenant_job
async def welcome_email(ctx: JobContext, tenant: Tenant, identity_id: int) -> str:
    """Queue and deliver the welcome email to `identity_id`, a member of `tenant`."""
    async with platform_tx() as tx:  # every query in a transaction: PgBouncer-safe
        member = await Membership.filter(
            tenant_id=tenant.id, identity_id=identity_id, is_active=True
        ).using_db(tx).exists()
        identity = await Identity.get_or_none(id=identity_id).using_db(tx) if member else None
    if identity is None:
        # Never email someone who is not (or no longer) in this workspace.
        return f"skipped: identity {identity_id} is not a member of tenant {tenant.id}"
    settings = get_settings()
    dedupe_key = f"welcome:{tenant.id}:{identity_id}"
    actor = Actor(kind="job", tenant_id=tenant.id, role="owner", label="job:welcome_email")
    async with acting_as(actor) as session:
        session.require("contacts", "view")
        contact_count = await Contact.all().using_db(session.tx).count()
        email_id = await queue_email(
            session.tx,
            tenant_id=tenant.id,
            kind="welcome",
            dedupe_key=dedupe_key,
            to=identity.email,
            subject=f"Welcome to Kith: {tenant.name} is ready",
            body_text=welcome_text(
                display_name=identity.display_name or identity.email,
                workspace=tenant.name,
                contact_count=contact_count,
                contacts_url=f"{settings.base_url}/t/{tenant.slug}/contacts",
            ),
        )
    if email_id is None:
        return f"skipped: email {dedupe_key} vanished"
    # After the commit above: deliver() claims the row in its own transaction.
    try:
        status = await deliver(email_id)
    except EmailDeliveryError as exc:
        job_try = int(ctx.get("job_try", 1))
        raise Retry(defer=RETRY_BACKOFF_S[min(job_try, len(RETRY_BACKOFF_S)) - 1]) from exc
    return f"email {email_id}: {status}"
