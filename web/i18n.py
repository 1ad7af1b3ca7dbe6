"""The UI's language: Jinja2's i18n extension with gettext catalogs.

Catalogs are `web/locale/<locale>/LC_MESSAGES/messages.po`, committed as text; at the first
render they are compiled to gettext's binary form in memory with Babel (no .mo files in
git, no build step to forget). A page's language is its workspace's locale setting; pages
outside a workspace (sign-in, signup, invitations, password reset) follow the browser's
Accept-Language. The callables read the template's `locale` variable, so one shared Jinja
environment serves concurrent requests in different languages.
"""

from __future__ import annotations

import functools
from gettext import GNUTranslations, NullTranslations
from io import BytesIO
from pathlib import Path
from typing import Any

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
    with (LOCALE_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=folder)
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


def install(env: Environment) -> None:
    """Add the i18n extension to `env`, translating through each template's `locale`."""
    env.add_extension("jinja2.ext.i18n")
    gettext: Any = _gettext
    ngettext: Any = _ngettext
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
