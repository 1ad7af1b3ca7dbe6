"""The ops console (/ops): support operators' sign-in, workspaces, actions and impersonation.

Operators hold their own cookie (kith_ops_session: path /ops, HttpOnly, SameSite=Strict), so
it never reaches a workspace's pages or API; a tenant user's session cookie means nothing
here. Each action needs a reason: a blank one is a 422 and changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

from arq.worker import Function
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kith.jobs.queue import get_queue
from kith.platform.audit.entries import AuditFilter
from kith.platform.backups.runs import failed_runs
from kith.platform.backups.workspace import console_overview, ops_request_backup, ops_request_restore
from kith.platform.billing.changes import money
from kith.platform.billing.plans import PLANS, Plan
from kith.platform.config import get_settings
from kith.platform.db import platform_tx
from kith.platform.identity.ratelimit import Lockout, begin_attempt, record_failure, record_success, release
from kith.platform.identity.totp import TwoFactorError, normalise_code
from kith.platform.observability import get_logger
from kith.platform.ops import console, figures
from kith.platform.ops.audit import ReasonRequired, clean_reason
from kith.platform.ops.impersonation import (
    COOKIE_NAME as IMPERSONATION_COOKIE,
)
from kith.platform.ops.impersonation import (
    ImpersonationError,
    end_impersonation,
    impersonations_of,
    lifetime,
    start_impersonation,
)
from kith.platform.ops.operators import (
    CHALLENGE_LIFETIME,
    OPERATOR_SESSION_LIFETIME,
    OperatorSession,
    check_operator_password,
    complete_sign_in,
    count_challenge_attempt,
    end_operator_session,
    has_second_factor,
    load_operator_session,
    start_challenge,
    throttle_key,
    verify_operator_code,
)
from kith.web.api.backups import enqueue_started
from kith.web.auth_pages import client_info, send_verification
from kith.web.forms import form_str, read_form, render

log = get_logger("kith.web.ops")

OPS_COOKIE = "kith_ops_session"
CHALLENGE_COOKIE = "kith_ops_challenge"
_CHALLENGE_GONE = "Your sign-in took too long or had too many wrong codes. Enter your email and password again."


def _set_ops_cookie(response: Response, name: str, value: str, max_age: int, path: str = "/ops") -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict",
                        secure=get_settings().secure_cookies, path=path)


def _page(request: Request, template: str, context: dict[str, object], status: int = 200) -> Response:
    # the tenant header (workspace nav, the member's Account link) has no place in the console
    return render(request, template, {"caller": None, "identity": None, "policy": None, **context}, status=status)


async def _operator(request: Request) -> OperatorSession | None:
    return await load_operator_session(request.cookies.get(OPS_COOKIE, ""))


def _to_login() -> Response:
    return RedirectResponse("/ops/login", status_code=303)


def _login_page(request: Request, *, email: str, error: str, status: int, lock: Lockout | None = None) -> Response:
    response = _page(request, "ops/login.html", {"email": email, "error": error}, status=status)
    if lock is not None:
        response.headers["Retry-After"] = str(lock.retry_after_seconds())
    response.delete_cookie(CHALLENGE_COOKIE, path="/ops/login")
    return response


async def login(request: Request) -> Response:
    if request.method == "GET":
        return _page(request, "ops/login.html", {"email": "", "error": ""})
    form = await read_form(request)
    email = form_str(form, "email").strip()
    client = client_info(request)
    attempt = await begin_attempt(throttle_key(email), client.ip)
    if isinstance(attempt, Lockout):
        log.info("operator sign-in refused while locked", scope=attempt.scope)
        return _login_page(request, email=email, error=attempt.message(), status=429, lock=attempt)
    operator = await check_operator_password(email, form_str(form, "password"))
    if operator is None or not await has_second_factor(operator.id):
        lock = await record_failure(attempt)
        log.warning("operator sign-in failed", reason="password")
        if lock is not None:
            return _login_page(request, email=email, error=lock.message(), status=429, lock=lock)
        return _login_page(request, email=email, error="Email or password is not correct.", status=401)
    await release(attempt)  # the code step is counted on its own
    raw = await start_challenge(operator.id, ip=client.ip, user_agent=client.user_agent)
    response = RedirectResponse("/ops/login/verify", status_code=303)
    _set_ops_cookie(response, CHALLENGE_COOKIE, raw, int(CHALLENGE_LIFETIME.total_seconds()), "/ops/login")
    return response


async def login_verify(request: Request) -> Response:
    form = await read_form(request) if request.method == "POST" else None  # CSRF before anything else
    challenge = await load_operator_session(request.cookies.get(CHALLENGE_COOKIE, ""), stage="password")
    if challenge is None:
        return _login_page(request, email="", error=_CHALLENGE_GONE, status=401)
    if form is None:
        return _page(request, "ops/login_verify.html", {"error": ""})
    code = form_str(form, "code")
    try:
        normalise_code(code)
    except TwoFactorError as exc:  # a typo, not a guess: nothing is counted
        return _page(request, "ops/login_verify.html", {"error": str(exc)}, status=422)
    client = client_info(request)
    attempt = await begin_attempt(throttle_key(challenge.operator.email), client.ip)
    if isinstance(attempt, Lockout):
        return _login_page(request, email=challenge.operator.email, error=attempt.message(), status=429,
                           lock=attempt)
    try:
        await verify_operator_code(challenge.operator.id, code)
    except TwoFactorError as exc:
        lock = await record_failure(attempt)
        tries_left = await count_challenge_attempt(challenge.id)
        log.warning("operator sign-in failed", reason="second_factor", operator_id=challenge.operator.id)
        if lock is not None:
            return _login_page(request, email=challenge.operator.email, error=lock.message(), status=429, lock=lock)
        if tries_left == 0:
            return _login_page(request, email=challenge.operator.email, error=_CHALLENGE_GONE, status=401)
        return _page(request, "ops/login_verify.html", {"error": str(exc)}, status=401)
    raw = await complete_sign_in(challenge, ip=client.ip, user_agent=client.user_agent)
    if raw is None:
        return _login_page(request, email=challenge.operator.email, error=_CHALLENGE_GONE, status=401)
    await record_success(attempt)
    response = RedirectResponse("/ops", status_code=303)
    _set_ops_cookie(response, OPS_COOKIE, raw, int(OPERATOR_SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(CHALLENGE_COOKIE, path="/ops/login")
    return response


async def logout(request: Request) -> Response:
    await read_form(request)
    raw = request.cookies.get(OPS_COOKIE, "")
    session = await _operator(request)
    response = RedirectResponse("/ops/login", status_code=303)
    if session is not None:
        # end live impersonations through the audited path first, so each workspace sees its end
        async with platform_tx() as tx:
            live = [i for i in await impersonations_of(tx, operator_session_id=session.id) if i.live]
        for item in live:
            ended = await end_impersonation(session.operator, item.id, client_info(request))
            if ended is not None:
                response.delete_cookie(IMPERSONATION_COOKIE, path=await _tenant_path(ended.tenant_id))
    if raw:
        await end_operator_session(raw)
    response.delete_cookie(OPS_COOKIE, path="/ops")
    return response


async def _tenant_path(tenant_id: int) -> str:
    row = await console.tenant_row(tenant_id)
    return f"/t/{row.slug}" if row is not None else "/"


async def dashboard(request: Request) -> Response:
    session = await _operator(request)
    if session is None:
        return _to_login()
    data = await console.dashboard()
    peak = max((n for _, n in data.signups), default=0)
    runs, jobs_error = await _job_runs()
    return _page(request, "ops/dashboard.html", {
        "operator": session.operator, "data": data, "peak": peak, "failed_backups": await failed_runs(),
        "figures": await figures.money_figures(), "largest_storage": await figures.largest_by_storage(),
        "failing_jobs": await figures.failing_jobs(runs), "failing_days": figures.FAILING_JOBS_PERIOD.days,
        "jobs_error": jobs_error, "kept_minutes": _kept_minutes(),
        "interrupted_emails": await figures.interrupted_emails(), "money": money})


@functools.cache
def _tenant_job_functions() -> frozenset[str]:
    """The worker's jobs whose first argument is a tenant id (those @tenant_job wraps, whose own
    second parameter is the tenant)."""
    from kith.jobs.failures import takes_tenant
    from kith.jobs.worker import WorkerSettings

    names: set[str] = set()
    for item in WorkerSettings.functions:
        name, coroutine = (item.name, item.coroutine) if isinstance(item, Function) else (item.__qualname__, item)
        if takes_tenant(coroutine):
            names.add(name)
    return frozenset(names)


def _kept_minutes() -> int:
    from kith.jobs.worker import WorkerSettings

    return int(WorkerSettings.keep_result // 60)


async def _job_runs() -> tuple[list[figures.JobRun], str]:
    """The finished jobs arq keeps, or none and why: the console renders while Redis is down."""
    try:
        return await figures.kept_job_runs(await get_queue(), queue_name=get_settings().queue_name,
                                           tenant_functions=_tenant_job_functions()), ""
    except Exception as exc:  # noqa: BLE001 - any Redis or arq failure; the rest of the page still helps
        log.warning("ops_job_results_unreadable", error=type(exc).__name__)
        return [], f"Job results cannot be read from Redis right now ({type(exc).__name__})."


async def tenants(request: Request) -> Response:
    session = await _operator(request)
    if session is None:
        return _to_login()
    params = request.query_params
    query, errors = _list_query(params)
    rows = [] if errors else await figures.list_tenants(query)
    plans = [plan.name for plan in PLANS.values()]
    kept = {"q": query.base.q, "status": query.base.status, "plan": query.base.plan, "sort": query.sort,
            "min_mrr": params.get("min_mrr", "").strip()[:20], "paying": "1" if query.paying_only else ""}
    return _page(request, "ops/tenants.html", {
        "operator": session.operator, "rows": rows, "query": query.base, "list": query, "statuses": console.STATUSES,
        "plans": plans, "sorts": figures.SORTS, "min_mrr_text": kept["min_mrr"], "errors": errors, "money": money,
        "page_size": console.PAGE_SIZE, "list_params": urlencode({k: v for k, v in kept.items() if v}),
        "sort_params": urlencode({k: v for k, v in kept.items() if v and k != "sort"})},
        status=422 if errors else 200)


# No workspace pays this much a month; a bigger "minimum" is a typo, not a filter.
MAX_MIN_MRR = Decimal(1_000_000_000)


def _list_query(params: Mapping[str, str]) -> tuple[figures.ListQuery, list[str]]:
    """The list's query from the URL, and a message for each value that makes no sense (shown
    instead of the list; nothing is silently dropped)."""
    errors: list[str] = []
    status = params.get("status", "").strip()
    if status and status not in console.STATUSES:
        errors.append(f"There is no status \"{status[:40]}\": choose one of {', '.join(console.STATUSES)}.")
        status = ""
    plan_text, plan = params.get("plan", "").strip()[:40], ""
    if plan_text:
        found = next((p for p in PLANS.values() if plan_text.lower() in (p.key, p.name.lower())), None)
        if found is None:
            errors.append(f"There is no plan \"{plan_text}\": plans are "
                          f"{', '.join(p.name for p in PLANS.values())}.")
        else:
            plan = found.name
    min_text, min_mrr = params.get("min_mrr", "").strip()[:20], None
    if min_text:
        try:
            value: Decimal | None = Decimal(min_text.removeprefix("$").replace(",", ""))
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value < 0 or value > MAX_MIN_MRR:
            errors.append(f"Minimum MRR \"{min_text}\" is not an amount: give dollars a month, like 15 or 49.50.")
        else:
            min_mrr = value
    sort = params.get("sort", "").strip() or "signup"
    if sort not in figures.SORTS:
        errors.append(f"The list cannot be ordered by \"{sort[:40]}\": order it by signup date or by MRR.")
        sort = "signup"
    paying = params.get("paying", "").strip()
    if paying not in ("", "1", "on"):
        errors.append("\"Paying only\" is either ticked or not.")
    page_text = params.get("page", "1")
    base = console.TenantQuery(q=params.get("q", "")[:200], status=status, plan=plan,
                               page=int(page_text) if page_text.isdigit() and len(page_text) < 7 else 1)
    return figures.ListQuery(base=base, sort=sort, min_mrr=min_mrr, paying_only=paying in ("1", "on")), errors


async def _detail_page(request: Request, session: OperatorSession, tenant_id: int, *, error: str = "",
                       notice: str = "", status: int = 200) -> Response:
    before = request.query_params.get("before", "")
    detail = await console.tenant_detail(
        tenant_id, operator_session_id=session.id, before_seq=int(before) if before.isdigit() else None,
        audit_filter=AuditFilter(action=request.query_params.get("action", "")[:100]))
    if detail is None:
        return _page(request, "error.html", {"status": 404, "title": "Not found",
                                             "message": "There is no such workspace."}, status=404)
    plans: list[Plan] = [p for p in PLANS.values() if p.paid]
    mrr, storage_mb = await figures.tenant_money(tenant_id)
    runs, jobs_error = await _job_runs()
    return _page(request, "ops/tenant.html", {
        "operator": session.operator, "detail": detail, "error": error, "notice": notice, "comp_plans": plans,
        "minutes": int(lifetime().total_seconds() // 60), "now": datetime.now(detail.tenant.created_at.tzinfo),
        "backups": await console_overview(tenant_id), "mrr": mrr, "storage_mb": storage_mb, "money": money,
        "jobs": await figures.jobs_of_tenant(runs, tenant_id), "jobs_error": jobs_error,
        "kept_minutes": _kept_minutes()},
        status=status)


async def tenant(request: Request) -> Response:
    session = await _operator(request)
    if session is None:
        return _to_login()
    notice = {"suspended": "Workspace suspended.", "reactivated": "Workspace reactivated.",
              "ended": "Impersonation ended.", "extended": "Trial extended.", "comped": "Plan comped.",
              "resent": "Verification email sent.", "backup": "Backup queued.",
              "restore": "Restore queued: the workspace switches over once the restored data is checked.",
              }.get(request.query_params.get("done", ""), "")
    return await _detail_page(request, session, int(request.path_params["tenant_id"]), notice=notice)


async def _status_action(request: Request, suspend: bool) -> Response:
    form = await read_form(request)
    session = await _operator(request)
    if session is None:
        return _to_login()
    tenant_id = int(request.path_params["tenant_id"])
    act = console.suspend_tenant if suspend else console.reactivate_tenant
    try:
        await act(session.operator, tenant_id, form_str(form, "reason"), client_info(request))
    except ReasonRequired as exc:
        return await _detail_page(request, session, tenant_id, error=str(exc), status=422)
    except console.TenantActionError as exc:
        return await _detail_page(request, session, tenant_id, error=str(exc), status=409)
    done = "suspended" if suspend else "reactivated"
    return RedirectResponse(f"/ops/tenants/{tenant_id}?done={done}", status_code=303)


async def suspend(request: Request) -> Response:
    return await _status_action(request, suspend=True)


async def reactivate(request: Request) -> Response:
    return await _status_action(request, suspend=False)


async def _support_action(request: Request, done: str) -> Response:
    form = await read_form(request)
    session = await _operator(request)
    if session is None:
        return _to_login()
    tenant_id = int(request.path_params["tenant_id"])
    reason = form_str(form, "reason")
    client = client_info(request)
    try:
        if done == "extended":
            days = form_str(form, "days").strip()
            if not days.isdigit():
                clean_reason(reason)  # a missing reason is named first, like everywhere
                return await _detail_page(request, session, tenant_id, status=422,
                                          error="Give the number of days to extend the trial by.")
            await console.extend_trial(session.operator, tenant_id, int(days), reason, client)
        elif done == "comped":
            try:
                until = datetime.combine(date.fromisoformat(form_str(form, "until").strip()), time(0), UTC)
            except ValueError:
                clean_reason(reason)
                return await _detail_page(request, session, tenant_id, status=422,
                                          error="Give the comp's end date (YYYY-MM-DD).")
            await console.comp_plan(session.operator, tenant_id, form_str(form, "plan"), until, reason, client)
        else:
            identity_text = form_str(form, "identity_id")
            issued = await console.resend_verification(
                session.operator, tenant_id, int(identity_text) if identity_text.isdigit() else 0, reason, client)
            await send_verification(issued)
    except ReasonRequired as exc:
        return await _detail_page(request, session, tenant_id, error=str(exc), status=422)
    except console.TenantActionError as exc:
        return await _detail_page(request, session, tenant_id, error=str(exc), status=409)
    return RedirectResponse(f"/ops/tenants/{tenant_id}?done={done}", status_code=303)


async def extend_trial(request: Request) -> Response:
    return await _support_action(request, "extended")


async def comp_plan(request: Request) -> Response:
    return await _support_action(request, "comped")


async def resend_verification(request: Request) -> Response:
    return await _support_action(request, "resent")


async def _backup_action(request: Request, restore: bool) -> Response:
    """Queue a backup, or a restore of one backup, with a reason; audited in both logs."""
    form = await read_form(request)
    session = await _operator(request)
    if session is None:
        return _to_login()
    tenant_id = int(request.path_params["tenant_id"])
    reason = form_str(form, "reason")
    try:
        if restore:
            run = await ops_request_restore(session.operator, tenant_id, form_str(form, "backup_id"), reason,
                                            client_info(request))
        else:
            run = await ops_request_backup(session.operator, tenant_id, reason, client_info(request))
    except ReasonRequired as exc:
        return await _detail_page(request, session, tenant_id, error=str(exc), status=422)
    except console.TenantActionError as exc:
        return await _detail_page(request, session, tenant_id, error=str(exc), status=409)
    await enqueue_started(run)
    done = "restore" if restore else "backup"
    return RedirectResponse(f"/ops/tenants/{tenant_id}?done={done}#backups", status_code=303)


async def trigger_backup(request: Request) -> Response:
    return await _backup_action(request, restore=False)


async def restore_backup(request: Request) -> Response:
    return await _backup_action(request, restore=True)


async def impersonate(request: Request) -> Response:
    form = await read_form(request)
    session = await _operator(request)
    if session is None:
        return _to_login()
    tenant_id = int(request.path_params["tenant_id"])
    identity_text = form_str(form, "identity_id")
    try:
        started = await start_impersonation(
            session.operator, session.id, tenant_id=tenant_id,
            identity_id=int(identity_text) if identity_text.isdigit() else 0,
            reason=form_str(form, "reason"), client=client_info(request))
    except ReasonRequired as exc:
        return await _detail_page(request, session, tenant_id, error=str(exc), status=422)
    except ImpersonationError as exc:
        return await _detail_page(request, session, tenant_id, error=str(exc), status=409)
    response = RedirectResponse(f"/t/{started.tenant_slug}/contacts", status_code=303)
    # Path /t/<slug>: the cookie reaches this workspace's pages and nothing else.
    _set_ops_cookie(response, IMPERSONATION_COOKIE, started.token, int(lifetime().total_seconds()),
                    f"/t/{started.tenant_slug}")
    return response


async def end(request: Request) -> Response:
    await read_form(request)
    session = await _operator(request)
    if session is None:
        return _to_login()
    ended = await end_impersonation(session.operator, int(request.path_params["impersonation_id"]),
                                    client_info(request))
    if ended is None:
        return _page(request, "error.html", {"status": 404, "title": "Not found",
                                             "message": "There is no such impersonation of yours."}, status=404)
    response = RedirectResponse(f"/ops/tenants/{ended.tenant_id}?done=ended", status_code=303)
    response.delete_cookie(IMPERSONATION_COOKIE, path=await _tenant_path(ended.tenant_id))
    return response


routes = [
    Route("/ops", dashboard),
    Route("/ops/login", login, methods=["GET", "POST"]),
    Route("/ops/login/verify", login_verify, methods=["GET", "POST"]),
    Route("/ops/logout", logout, methods=["POST"]),
    Route("/ops/tenants", tenants),
    Route("/ops/tenants/{tenant_id:int}", tenant),
    Route("/ops/tenants/{tenant_id:int}/suspend", suspend, methods=["POST"]),
    Route("/ops/tenants/{tenant_id:int}/reactivate", reactivate, methods=["POST"]),
    Route("/ops/tenants/{tenant_id:int}/impersonate", impersonate, methods=["POST"]),
    Route("/ops/tenants/{tenant_id:int}/extend-trial", extend_trial, methods=["POST"]),
    Route("/ops/tenants/{tenant_id:int}/comp", comp_plan, methods=["POST"]),
    Route("/ops/tenants/{tenant_id:int}/resend-verification", resend_verification, methods=["POST"]),
    Route("/ops/impersonations/{impersonation_id:int}/end", end, methods=["POST"]),
    Route("/ops/tenants/{tenant_id:int}/backup", trigger_backup, methods=["POST"]),
    Route("/ops/tenants/{tenant_id:int}/restore", restore_backup, methods=["POST"]),
]
