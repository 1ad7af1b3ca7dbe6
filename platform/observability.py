"""Logs and error reports: structlog JSON lines on stdout, Sentry with personal data scrubbed.

Every process (web, worker, CLI) calls `configure_logging` and `init_sentry` once at start.
Per request or job, `bind_context` attaches the tenant slug and request/job ids to every
log line and to Sentry's scope; both live in contextvars, so each asyncio task (one per
request in uvicorn, one per job in arq) sees only its own values.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO, cast

import sentry_sdk
import structlog
from sentry_sdk.types import Breadcrumb, BreadcrumbHint, Event, Hint
from structlog.typing import EventDict

from kith.platform.config import Settings

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

# Libraries that install their own handlers (uvicorn does when started with its default
# log_config): their records are sent to the root handler instead, so there is one format.
_ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "arq.worker", "tortoise")

# The context keys bind_context manages; Sentry tags carry the same names.
_CONTEXT_KEYS = ("tenant", "request_id", "job", "job_id")


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is at the time of the record.

    A plain StreamHandler keeps the stream it was created with; looking it up per record
    lets pytest's capture and contextlib.redirect_stdout see the lines too.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_handler: _StdoutHandler | None = None


def _add_component(component: str) -> structlog.typing.Processor:
    def add(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("component", component)
        return event_dict

    return add


def configure_logging(settings: Settings, component: str) -> None:
    """Route structlog and stdlib logging through one renderer on stdout.

    KITH_LOG_FORMAT=json gives one JSON object per line (what log shippers read);
    console gives coloured, aligned lines for a developer's terminal. Calling it again
    replaces the previous configuration instead of adding a second handler.
    """
    global _handler
    level = _LEVELS.get(settings.log_level.strip().lower(), logging.INFO)
    json_output = settings.log_format.strip().lower() != "console"

    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_component(component),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a later configure_logging (tests, `kith dev` reloads) must take effect
        # on loggers that modules created at import time.
        cache_logger_on_first_use=False,
    )

    renderer: structlog.typing.Processor
    final: list[structlog.typing.Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json_output:
        # Tracebacks go into the one JSON line as a string, never as extra lines.
        final.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[*final, renderer])

    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StdoutHandler()
    _handler.setFormatter(formatter)
    root.addHandler(_handler)
    root.setLevel(level)

    for name in _ROUTED_LOGGERS:
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.setLevel(logging.NOTSET)
    # The web middleware logs one richer line per request (tenant, request_id, duration).
    logging.getLogger("uvicorn.access").setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger whose lines carry the bound context and go through configure_logging."""
    return structlog.stdlib.get_logger(name)


# --- personal data -------------------------------------------------------------------

_EMAIL_RE = re.compile(r"[\w.+%-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
# Candidates: an optional +, then digits with common separators; the callback decides.
_PHONE_CANDIDATE_RE = re.compile(r"(?<![\w.+-])\+?\(?\d[\d ().\-/]{5,}\d(?![\w])")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_IPV4_RE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    # E.164 numbers have at most 15 digits; 7 is the shortest subscriber number worth
    # hiding. Dates and IPv4 addresses (servers we failed to reach) stay readable.
    if not 7 <= digits <= 15 or _DATE_RE.match(text) or _IPV4_RE.match(text):
        return text
    return "[phone]"


def redact(text: str) -> str:
    """Replace what looks like an email address or a phone number with a fixed marker."""
    return _PHONE_CANDIDATE_RE.sub(_phone, _EMAIL_RE.sub("[email]", text))


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: _redact_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_any(v) for v in value]
    return value


_DROPPED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
     "x-forwarded-for", "x-real-ip", "x-csrf-token"}
)


def _scrub_request(request: dict[str, Any]) -> None:
    # Bodies and cookies of a CRM hold customers' data and sessions: never sent.
    for key in ("cookies", "data", "env"):
        request.pop(key, None)
    headers = request.get("headers")
    if isinstance(headers, Mapping):
        request["headers"] = {k: v for k, v in headers.items() if str(k).lower() not in _DROPPED_HEADERS}
    elif isinstance(headers, list):
        request["headers"] = [h for h in headers if str(h[0]).lower() not in _DROPPED_HEADERS]
    for key in ("url", "query_string"):
        if isinstance(request.get(key), str):
            request[key] = redact(request[key])


def _scrub_frames(container: Mapping[str, Any]) -> None:
    for item in container.get("values") or []:
        for frame in (item.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)


def scrub_event(event: Event, hint: Hint) -> Event | None:
    """Sentry `before_send`: strip personal data from an event before it leaves the process."""
    data = cast(dict[str, Any], event)
    if isinstance(data.get("request"), dict):
        _scrub_request(data["request"])
    user = data.get("user")
    if isinstance(user, dict):
        for key in ("email", "ip_address", "username"):
            user.pop(key, None)
        if not user:
            data.pop("user")
    for item in (data.get("exception") or {}).get("values") or []:
        if isinstance(item.get("value"), str):
            item["value"] = redact(item["value"])
    # Local variables would hold contact records; init_sentry disables them, this is a backstop.
    _scrub_frames(data.get("exception") or {})
    _scrub_frames(data.get("threads") or {})
    if isinstance(data.get("message"), str):
        data["message"] = redact(data["message"])
    logentry = data.get("logentry")
    if isinstance(logentry, dict):
        data["logentry"] = _redact_any(logentry)
    if "extra" in data:
        data["extra"] = _redact_any(data["extra"])
    crumbs = data.get("breadcrumbs")
    values = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
    for crumb in values or []:
        _scrub_crumb(crumb)
    return event


def _scrub_crumb(crumb: dict[str, Any]) -> None:
    if isinstance(crumb.get("message"), str):
        crumb["message"] = redact(crumb["message"])
    if "data" in crumb:
        crumb["data"] = _redact_any(crumb["data"])


def scrub_breadcrumb(crumb: Breadcrumb, hint: BreadcrumbHint) -> Breadcrumb | None:
    """Sentry `before_breadcrumb`: the same redaction, applied as breadcrumbs are recorded."""
    _scrub_crumb(crumb)
    return crumb


def init_sentry(settings: Settings, component: str) -> bool:
    """Start Sentry when SENTRY_DSN is set; return whether it was started."""
    if not settings.sentry_dsn:
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn.reveal(),
        environment=settings.sentry_environment,
        # send_default_pii is left unset: unset means False (no user, cookies or IPs, and
        # the SDK's own EventScrubber runs), while passing it at all is deprecated since
        # sentry-sdk 2.7x (its data_collection successor does not exist in older 2.x).
        # Frame locals and request bodies are where a CRM's customer data sits.
        include_local_variables=False,
        max_request_body_size="never",
        before_send=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
    )
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True


def shutdown_sentry(timeout: float = 2.0) -> None:
    """Flush pending events and detach the client (process exit, tests)."""
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=timeout)
    scope = sentry_sdk.get_global_scope()
    scope.set_client(None)
    scope.remove_tag("component")


# --- per request / per job context -------------------------------------------------------

def bind_context(
    *,
    tenant: str | None = None,
    request_id: str | None = None,
    job: str | None = None,
    job_id: str | None = None,
) -> None:
    """Attach tenant slug, request id and job name/id to log lines and Sentry events.

    Only the given (non-None) values are bound; they stay bound for the current task
    and the tasks it starts, until clear_context().
    """
    values = {
        k: v
        for k, v in (("tenant", tenant), ("request_id", request_id), ("job", job), ("job_id", job_id))
        if v is not None
    }
    if not values:
        return
    structlog.contextvars.bind_contextvars(**values)
    # Sentry's isolation scope object is shared by every task that inherited it; tagging
    # it in place would label one tenant's error with another's slug when requests or
    # jobs run concurrently. A fork set into this task's context keeps the tags with it,
    # exactly like the structlog contextvars above.
    scope = sentry_sdk.get_isolation_scope().fork()
    sentry_sdk.Scope.set_isolation_scope(scope)
    for key, value in values.items():
        scope.set_tag(key, value)


def clear_context() -> None:
    """Forget the log context bound in this task, and the Sentry tags bind_context set."""
    structlog.contextvars.clear_contextvars()
    scope = sentry_sdk.get_isolation_scope().fork()
    sentry_sdk.Scope.set_isolation_scope(scope)
    for key in _CONTEXT_KEYS:
        scope.remove_tag(key)
