"""Workspace slugs: what a tenant types into its URL (/t/<slug>/)."""

from __future__ import annotations

import re

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
MIN_LEN, MAX_LEN = 3, 40

RESERVED = frozenset(
    """
    www api app admin ops static assets media cdn mail email smtp imap pop ftp ssh
    support help status docs blog billing signup login logout register auth oauth sso
    dev test staging prod production dashboard console root system kith public
    healthz readyz metrics webhooks webhook t u security account accounts settings
    """.split()
)


class SlugError(ValueError):
    """The slug is malformed, reserved or taken; the message says which."""


def validate_slug(slug: str) -> str:
    """Return the slug if it is acceptable, else raise SlugError naming the problem."""
    if not slug:
        raise SlugError("Workspace address is required.")
    if len(slug) < MIN_LEN or len(slug) > MAX_LEN:
        raise SlugError(f"Workspace address must be {MIN_LEN} to {MAX_LEN} characters long.")
    if not SLUG_RE.match(slug):
        raise SlugError(
            "Workspace address may contain only lowercase letters, digits and hyphens, "
            "and must start and end with a letter or digit."
        )
    if "--" in slug:
        raise SlugError("Workspace address may not contain two hyphens in a row.")
    if slug in RESERVED:
        raise SlugError(f"Workspace address '{slug}' is reserved; please choose another.")
    return slug
