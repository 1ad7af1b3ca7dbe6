"""Signing a company up: tenant, schema, owner identity and membership in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity, Membership
from kith.platform.identity.passwords import (
    PasswordRuleError,
    check_password_rules,
    hash_password,
    verify_password,
)
from kith.platform.tenancy.models import Tenant
from kith.platform.tenancy.provisioning import TenantNameError, provision_tenant_in, validate_company_name
from kith.platform.tenancy.slugs import SlugError, validate_slug


class SignupError(ValueError):
    """Bad signup input; `fields` maps each bad field to a message."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


@dataclass
class SignupResult:
    tenant: Tenant
    identity: Identity
    membership: Membership


def normalize_email(email: str) -> str:
    """Validate an email address's syntax and return its normalized form."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


async def sign_up(*, company_name: str, slug: str, email: str, password: str, display_name: str = "") -> SignupResult:
    """Create a workspace and its owner. Nothing is written unless everything is valid."""
    errors: dict[str, str] = {}
    slug = slug.strip().lower()
    try:
        company_name = validate_company_name(company_name)
    except TenantNameError as exc:
        errors["company_name"] = str(exc)
    try:
        validate_slug(slug)
    except SlugError as exc:
        errors["slug"] = str(exc)
    try:
        email = normalize_email(email)
    except ValueError as exc:
        errors["email"] = str(exc) or "Email address is not valid."
    try:
        check_password_rules(password, email=email)
    except PasswordRuleError as exc:
        errors["password"] = str(exc)
    if errors:
        raise SignupError(errors)

    async with platform_tx() as tx:
        identity = await Identity.filter(email__iexact=email).using_db(tx).first()
        if identity is not None and not verify_password(identity.password_hash, password):
            raise SignupError({"email": "An account with this email already exists; sign in with its password "
                                        "to create another workspace."})
        try:
            tenant = await provision_tenant_in(tx, slug=slug, name=company_name)
        except SlugError as exc:
            raise SignupError({"slug": str(exc)}) from None
        if identity is None:
            identity = await Identity.create(
                email=email, display_name=display_name.strip() or email.split("@")[0],
                password_hash=hash_password(password), using_db=tx,
            )
        membership = await Membership.create(tenant=tenant, identity=identity, role="owner", using_db=tx)
    return SignupResult(tenant=tenant, identity=identity, membership=membership)
