"""Signing a company up: tenant, schema, owner identity and membership, the trial on the chosen
plan and the owner's email verification link, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from kith.platform.billing.plans import DEFAULT_TRIAL_PLAN, trial_plans
from kith.platform.billing.subscriptions import start_trial_in
from kith.platform.db import platform_tx
from kith.platform.identity.models import Identity, Membership
from kith.platform.identity.passwords import (
    PasswordRuleError,
    check_password_rules,
    hash_password,
    verify_password,
)
from kith.platform.identity.verification import IssuedVerification, VerificationRefused, issue_verification_in
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
    # the owner's verification link, written with the workspace; None when the address is
    # already verified (or had its hourly links): deliver its email after the commit
    verification: IssuedVerification | None = None


def normalize_email(email: str) -> str:
    """Validate an email address's syntax and return its normalized form."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


async def sign_up(*, company_name: str, slug: str, email: str, password: str, display_name: str = "",
                  plan: str = "") -> SignupResult:
    """Create a workspace and its owner, with a trial of `plan` (a key of `trial_plans()`;
    blank: Pro) and a verification link for an unverified owner. Nothing is written unless
    everything is valid."""
    errors: dict[str, str] = {}
    plan = plan.strip().lower() or DEFAULT_TRIAL_PLAN
    offered = trial_plans()
    if plan not in {p.key for p in offered}:
        errors["plan"] = f"Choose one of the plans offered: {', '.join(p.name for p in offered)}."
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
        await start_trial_in(tx, tenant.id, plan)
        verification: IssuedVerification | None = None
        if identity.email_verified_at is None:
            try:
                verification = await issue_verification_in(tx, identity.id)
            except VerificationRefused:
                pass  # links sent within the hour still work; another workspace needs no new one
    return SignupResult(tenant=tenant, identity=identity, membership=membership, verification=verification)
