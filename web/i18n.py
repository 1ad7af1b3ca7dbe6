"""The UI's language: Jinja2's i18n extension with gettext catalogs.

Catalogs are `web/locale/<locale>/LC_MESSAGES/*.po` (messages.po for the platform's pages, one
file per CRM domain beside it, merged), committed as text; at the first render they are
compiled to gettext's binary form in memory with Babel (no .mo files in git, no build step
to forget). A page's language is its workspace's locale setting; pages
outside a workspace (sign-in, signup, invitations, password reset) follow the browser's
Accept-Language. The callables read the template's `locale` variable, so one shared Jinja
environment serves concurrent requests in different languages.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from gettext import GNUTranslations, NullTranslations
from io import BytesIO
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

LOCALE_DIR = Path(__file__).parent / "locale"
DEFAULT_LOCALE = "en"
# workspace locale setting -> catalog folder (gettext spells regions with an underscore)
CATALOGS = {"zh-CN": "zh_CN"}


@functools.cache
def translations(locale: str) -> NullTranslations:
    """The compiled catalog of `locale` (English, the source language, needs none)."""
    folder = CATALOGS.get(locale)
    if folder is None:
        return NullTranslations()
    # messages.po first: a domain catalog adds strings and never retranslates the platform's
    folder_path = LOCALE_DIR / folder / "LC_MESSAGES"
    files = [folder_path / "messages.po", *sorted(p for p in folder_path.glob("*.po") if p.name != "messages.po")]
    with files[0].open("rb") as po:
        catalog = read_po(po, locale=folder)
    for path in files[1:]:
        with path.open("rb") as po:
            for message in read_po(po, locale=folder):
                # a message with a context (pgettext) is its own entry beside the same words without one
                if message.id and catalog.get(message.id, context=message.context) is None:
                    catalog[message.id] = message
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return GNUTranslations(compiled)


def gettext_for(locale: str, message: str) -> str:
    """`message` in `locale` (for text made in Python, such as notices)."""
    return translations(locale).gettext(message)


def locale_from_accept_language(header: str) -> str:
    """zh-CN for browsers that prefer Chinese (any zh except traditional-script tags), else en."""
    for part in header.split(","):
        tag = part.split(";")[0].strip().lower()
        if not tag or tag == "*":
            continue
        if tag.startswith("zh"):
            return "en" if any(t in tag for t in ("hant", "-tw", "-hk", "-mo")) else "zh-CN"
        return DEFAULT_LOCALE
    return DEFAULT_LOCALE


@pass_context
def _gettext(context: Context, message: str) -> str:
    return translations(str(context.get("locale") or DEFAULT_LOCALE)).gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return translations(str(context.get("locale") or DEFAULT_LOCALE)).ngettext(singular, plural, n)


@pass_context
def _pgettext(context: Context, message_context: str, message: str) -> str:
    """`pgettext("ticket status", "New")`: the same English words translated apart by what they name."""
    return translations(str(context.get("locale") or DEFAULT_LOCALE)).pgettext(message_context, message)


@functools.cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # settings validate the name; a zone dropped from tzdata later must not break every page
        return ZoneInfo("UTC")


def local_time(value: datetime, time_zone: str) -> datetime:
    """`value` (stored in UTC; a naive value is taken as UTC) in the IANA zone `time_zone`."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(_zone(time_zone))


@pass_context
def _local_dt(context: Context, value: datetime | date | None, fmt: str = "%Y-%m-%d %H:%M %Z") -> str:
    """Jinja filter `local_dt`: a stored time shown in the template's `time_zone` (the workspace's
    setting; UTC outside a workspace), with the zone's abbreviation by default (CST, PDT, UTC)."""
    if value is None:
        return ""
    if not isinstance(value, datetime):  # a calendar date has no zone to convert
        return value.strftime(fmt.replace(" %Z", "").replace("%Z", ""))
    return local_time(value, str(context.get("time_zone") or "UTC")).strftime(fmt)


@pass_context
def _translate(context: Context, message: str | None) -> str:
    """Jinja filter `translate`: text made in Python (a notice, an error page's message) in the page's
    language when the catalog has it. Unlike `_()` it does no %-formatting, so any text is safe."""
    if not message:
        return ""
    return translations(str(context.get("locale") or DEFAULT_LOCALE)).gettext(str(message))


def install(env: Environment) -> None:
    """Add the i18n extension to `env`, translating through each template's `locale`, and the
    `local_dt` filter, showing times in each template's `time_zone`."""
    env.filters["local_dt"] = _local_dt
    env.filters["translate"] = _translate
    env.add_extension("jinja2.ext.i18n")
    gettext: Any = _gettext
    ngettext: Any = _ngettext
    pgettext: Any = _pgettext
    env.install_gettext_callables(gettext, ngettext, newstyle=True, pgettext=pgettext)  # type: ignore[attr-defined]
