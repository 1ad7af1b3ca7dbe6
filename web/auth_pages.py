"""Signup, login (password, then a code when two-factor authentication is on), logout
and the workspace chooser.

Sign-in attempts are throttled per email and per client IP (kith.platform.identity.ratelimit);
every success, failure, lockout and logout is audited. Between password and code the person
holds only a short-lived challenge cookie, never a session.
"""

from __future__ import annotations

from urllib.parse import urlparse

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.platform.billing.plans import DEFAULT_TRIAL_PLAN, trial_plans
from kith.platform.db import platform_tx
from kith.platform.identity.events import ClientInfo, record_account_event
from kith.platform.identity.models import Identity
from kith.platform.identity.ratelimit import Lockout, begin_attempt, record_failure, record_success, release
from kith.platform.identity.sessions import (
    CHALLENGE_LIFETIME,
    SESSION_LIFETIME,
    check_password,
    count_challenge_attempt,
    end_login_challenge,
    end_session,
    identity_id_for_email,
    load_login_challenge,
    mark_signed_in,
    start_login_challenge,
    start_session,
    workspaces_of,
)
from kith.platform.identity.totp import TwoFactorError, normalise_code, verify_second_factor
from kith.platform.identity.verification import IssuedVerification
from kith.platform.observability import get_logger
from kith.platform.tenancy.signup import SignupError, sign_up
from kith.web.edge import SESSION_COOKIE
from kith.web.forms import form_str, read_form, render, set_cookie

log = get_logger("kith.web.auth")


def _safe_next(target: str) -> str:
    """Only same-site relative paths, so ?next= cannot send people elsewhere."""
    parsed = urlparse(target)
    if target.startswith("/") and not target.startswith("//") and not parsed.scheme and not parsed.netloc:
        return target
    return ""


CHALLENGE_COOKIE = "kith_login_challenge"
_CHALLENGE_GONE = ("Your sign-in took too long or had too many wrong codes. "
                   "Enter your email and password again.")


def _client(request: Request) -> tuple[str, str]:
    ip = request.client.host if request.client else ""
    return ip, request.headers.get("user-agent", "")


def client_info(request: Request) -> ClientInfo:
    """Where the request came from, for the throttle and the audit log."""
    ip, agent = _client(request)
    request_id = str(request.scope.get("state", {}).get("request_id", ""))
    return ClientInfo(ip=ip, user_agent=agent[:300], request_id=request_id)


async def _signed_in(request: Request, identity_id: int, target: str) -> Response:
    async with platform_tx() as tx:
        identity = await Identity.filter(id=identity_id).using_db(tx).get()
    ip, agent = _client(request)
    raw = await start_session(identity, ip=ip, user_agent=agent)
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, SESSION_COOKIE, raw, max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


async def signup(request: Request) -> Response:
    values = {"company_name": "", "slug": "", "email": "", "plan": DEFAULT_TRIAL_PLAN}
    plans = trial_plans()
    if request.method == "GET":
        return render(request, "signup.html", {"values": values, "errors": {}, "plans": plans})
    form = await read_form(request)
    values = {k: form_str(form, k) for k in values}
    try:
        result = await sign_up(
            company_name=values["company_name"], slug=values["slug"], email=values["email"],
            password=form_str(form, "password"), plan=values["plan"],
        )
    except SignupError as exc:
        return render(request, "signup.html", {"values": values, "errors": exc.fields, "plans": plans}, status=422)
    await _welcome(result.tenant.id, result.identity.id)
    if result.verification is not None:
        await send_verification(result.verification)
    return await _signed_in(request, result.identity.id, f"/t/{result.tenant.slug}/contacts")


async def _welcome(tenant_id: int, identity_id: int) -> None:
    from kith.jobs.queue import enqueue_welcome_email

    try:
        await enqueue_welcome_email(tenant_id, identity_id)
    except (OSError, RedisError) as exc:  # Redis down: the workspace exists; log it rather than fail signup
        log.warning("welcome email not queued", tenant_id=tenant_id, error=str(exc))


async def send_verification(issued: IssuedVerification) -> None:
    """Queue the delivery of a verification email written in a committed transaction."""
    from kith.jobs.invites import enqueue_verification_email

    try:
        await enqueue_verification_email(issued.verification_id, issued.email_id)
    except (OSError, RedisError) as exc:  # Redis down: the link exists, its email waits in the outbox
        log.warning("verification email not queued", error=str(exc))


def _login_page(request: Request, *, email: str, next_url: str, error: str, status: int,
                lock: Lockout | None = None) -> Response:
    response = render(request, "login.html", {"email": email, "next": next_url, "error": error}, status=status)
    if lock is not None:
        response.headers["Retry-After"] = str(lock.retry_after_seconds())
    response.delete_cookie(CHALLENGE_COOKIE, path="/")
    return response


async def _refuse_locked(request: Request, lock: Lockout, *, email: str, next_url: str,
                         identity_id: int | None, client: ClientInfo) -> Response:
    # Only the attempt that starts a lock is audited; attempts refused while it lasts go to
    # the request log, so a flood against a locked account cannot flood the audit logs.
    if lock.started:
        await record_account_event(identity_id, "login.locked", client, email=email,
                                   detail={"scope": lock.scope, "until": lock.until.isoformat()})
    else:
        log.info("login refused while locked", scope=lock.scope)
    return _login_page(request, email=email, next_url=next_url, error=lock.message(), status=429, lock=lock)


async def _complete(request: Request, identity: Identity, next_url: str, client: ClientInfo,
                    factor: str) -> Response:
    await mark_signed_in(identity.id)
    await record_account_event(identity.id, "login.success", client, email=identity.email,
                               detail={"factor": factor})
    if not next_url:
        spaces = await workspaces_of(identity.id)
        next_url = f"/t/{spaces[0].slug}/contacts" if len(spaces) == 1 else "/workspaces"
    response = await _signed_in(request, identity.id, next_url)
    response.delete_cookie(CHALLENGE_COOKIE, path="/")
    return response


async def login(request: Request) -> Response:
    next_url = _safe_next(request.query_params.get("next", ""))
    if request.method == "GET":
        return render(request, "login.html", {"email": "", "next": next_url, "error": ""})
    form = await read_form(request)
    email = form_str(form, "email").strip()
    next_url = _safe_next(form_str(form, "next"))
    client = client_info(request)
    attempt = await begin_attempt(email, client.ip)
    if isinstance(attempt, Lockout):
        return await _refuse_locked(request, attempt, email=email, next_url=next_url,
                                    identity_id=await identity_id_for_email(email), client=client)
    checked = await check_password(email, form_str(form, "password"))
    identity = checked.identity
    if identity is None or not checked.ok:
        lock = await record_failure(attempt)
        identity_id = identity.id if identity is not None else None
        await record_account_event(identity_id, "login.failure", client, email=email,
                                   detail={"reason": "password"})
        if lock is not None:
            return await _refuse_locked(request, lock, email=email, next_url=next_url, identity_id=identity_id,
                                        client=client)
        return _login_page(request, email=email, next_url=next_url, status=401,
                           error="Email or password is not correct.")
    if identity.totp_enabled_at is None:
        await record_success(attempt)
        return await _complete(request, identity, next_url, client, "password")
    # Password right, code still owed: the code step is counted on its own.
    await release(attempt)
    raw = await start_login_challenge(identity.id, next_url=next_url)
    response = RedirectResponse("/login/verify", status_code=303)
    set_cookie(response, CHALLENGE_COOKIE, raw, max_age=int(CHALLENGE_LIFETIME.total_seconds()))
    return response


async def login_verify(request: Request) -> Response:
    """The second step: a TOTP code or a recovery code."""
    if request.method == "GET":
        challenge = await load_login_challenge(request.cookies.get(CHALLENGE_COOKIE, ""))
        if challenge is None:
            return _login_page(request, email="", next_url="", error=_CHALLENGE_GONE, status=401)
        return render(request, "login_verify.html", {"error": ""})
    form = await read_form(request)
    challenge = await load_login_challenge(request.cookies.get(CHALLENGE_COOKIE, ""))
    if challenge is None:
        return _login_page(request, email="", next_url="", error=_CHALLENGE_GONE, status=401)
    identity: Identity = challenge.identity
    code = form_str(form, "code")
    try:
        normalise_code(code)
    except TwoFactorError as exc:  # a typo, not a guess: nothing is counted
        return render(request, "login_verify.html", {"error": str(exc)}, status=422)
    client = client_info(request)
    attempt = await begin_attempt(identity.email, client.ip)
    if isinstance(attempt, Lockout):
        await end_login_challenge(challenge.id)
        return await _refuse_locked(request, attempt, email=identity.email, next_url="", identity_id=identity.id,
                                    client=client)
    try:
        factor = await verify_second_factor(identity.id, code)
    except TwoFactorError as exc:
        lock = await record_failure(attempt)
        tries_left = await count_challenge_attempt(challenge.id)
        await record_account_event(identity.id, "login.failure", client, email=identity.email,
                                   detail={"reason": "second_factor"})
        if lock is not None:
            await end_login_challenge(challenge.id)
            return await _refuse_locked(request, lock, email=identity.email, next_url="", identity_id=identity.id,
                                        client=client)
        if tries_left == 0:
            return _login_page(request, email=identity.email, next_url="", error=_CHALLENGE_GONE, status=401)
        return render(request, "login_verify.html", {"error": str(exc)}, status=401)
    if not await end_login_challenge(challenge.id):
        # a parallel request already finished (or spent) this challenge
        return _login_page(request, email=identity.email, next_url="", error=_CHALLENGE_GONE, status=401)
    await record_success(attempt)
    return await _complete(request, identity, challenge.next_url, client, factor)


async def logout(request: Request) -> Response:
    await read_form(request)
    raw = request.cookies.get(SESSION_COOKIE, "")
    if raw:
        await end_session(raw)
        identity = request.state.identity
        if identity is not None:
            await record_account_event(identity.id, "logout", client_info(request), email=identity.email)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def workspaces(request: Request) -> Response:
    identity = request.state.identity
    if identity is None:
        return RedirectResponse("/login?next=/workspaces", status_code=303)
    return render(request, "workspaces.html", {"workspaces": await workspaces_of(identity.id)})


async def home(request: Request) -> Response:
    if request.state.identity is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/workspaces", status_code=303)


routes = [
    Route("/", home),
    Route("/signup", signup, methods=["GET", "POST"]),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/login/verify", login_verify, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/workspaces", workspaces),
]
