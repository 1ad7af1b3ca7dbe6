"""Every string the workspace pages mark for translation has a Simplified Chinese entry."""

from __future__ import annotations

import re
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "web"
# The ops console is for Kith's own support staff and stays English.
UNTRANSLATED_FOLDERS = {"ops"}
# an entry with a context (pgettext: the same English words naming different things)
IN_CONTEXT = re.compile(r'^msgctxt "((?:[^"\\]|\\.)*)"\nmsgid "((?:[^"\\]|\\.)*)"\nmsgstr "((?:[^"\\]|\\.)*)"', re.M)


def test_every_marked_template_string_is_translated_to_zh_cn() -> None:
    # messages.po and one catalog per CRM domain beside it, merged as web/i18n.py merges them
    catalogs = sorted((WEB / "locale" / "zh_CN" / "LC_MESSAGES").glob("*.po"))
    po = "\n".join(p.read_text(encoding="utf-8") for p in catalogs)
    in_context = {(c, m): t for c, m, t in IN_CONTEXT.findall(po)}
    entries = dict(re.findall(r'^msgid "((?:[^"\\]|\\.)*)"\nmsgstr "((?:[^"\\]|\\.)*)"', IN_CONTEXT.sub("", po),
                              flags=re.M))
    missing = []
    for template in sorted((WEB / "templates").rglob("*.html")):
        if UNTRANSLATED_FOLDERS & set(template.relative_to(WEB / "templates").parts):
            continue
        source = template.read_text(encoding="utf-8")
        for text in re.findall(r'_\(\s*"((?:[^"\\]|\\.)*)"', source):
            if not entries.get(text):
                missing.append(f"{template.relative_to(WEB)}: {text}")
        for context, text in re.findall(r'pgettext\(\s*"((?:[^"\\]|\\.)*)",\s*"((?:[^"\\]|\\.)*)"', source):
            if not in_context.get((context, text)):
                missing.append(f"{template.relative_to(WEB)}: {context}: {text}")
    assert not missing, "strings without a zh-CN translation:\n" + "\n".join(missing)


def test_catalogs_agree_on_every_shared_string() -> None:
    """One English string reads the same everywhere in Chinese: a string two catalogs both carry
    must have one translation (web/i18n.py lets messages.po win, then the first domain catalog)."""
    translations: dict[str, dict[str, str]] = {}
    for catalog in sorted((WEB / "locale" / "zh_CN" / "LC_MESSAGES").glob("*.po")):
        text = IN_CONTEXT.sub("", catalog.read_text(encoding="utf-8"))
        for msgid, msgstr in re.findall(r'^msgid "((?:[^"\\]|\\.)+)"\nmsgstr "((?:[^"\\]|\\.)*)"', text, flags=re.M):
            translations.setdefault(msgid, {})[catalog.name] = msgstr
    disagree = {k: v for k, v in translations.items() if len(set(v.values())) > 1}
    assert not disagree, f"translated differently in different catalogs: {disagree}"
