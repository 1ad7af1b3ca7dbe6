"""Email templates: merge fields in a sandbox, the unsubscribe link, tracked links, the open pixel.

A template is written by a workspace member and filled in with each recipient's values, so it
runs in jinja2's ImmutableSandboxedEnvironment and reaches nothing but the merge dict: no
globals (range, lipsum, cycler, ... are gone), no attribute access at all (merge values are
plain strings and numbers, so `.__class__` and friends have nothing to offer), a short list of
text filters, and no loops, macros or includes. What stays is linear in the template's size, so a
template cannot stall the sending worker or grow an email without bound.

Missing or empty merge values are left undefined, and an undefined name renders "" and takes a
`default`: `{{ first_name | default("there") }}`. HTML bodies are autoescaped (a contact named
"<script>" stays text); the subject and the text body are not, and the subject is one line.

`render` then makes the email a campaign sends: the unsubscribe link is added to each body that
does not use `unsubscribe_url`, links in the HTML go through `click_url` (signed redirects, see
links.py), and the open pixel goes before </body>. `check_template` reports problems for people
(the part, the line, what is wrong) before a template is saved; `render` raises TemplateError
with the same kind of message when a template cannot be filled in.
"""

from __future__ import annotations

import functools
import html as html_lib
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any, Final

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes, pass_eval_context
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError
from jinja2.filters import do_replace
from jinja2.nodes import EvalContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

# The recipient fields a template may use; custom contact fields come as custom_<key>.
MERGE_FIELDS: Final = ("name", "first_name", "last_name", "email", "company_name", "title", "workspace_name",
                       "unsubscribe_url")
CUSTOM_PREFIX: Final = "custom_"
_CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Filters that only reshape text; anything reaching objects (attr, map, selectattr), making
# markup (safe, tojson, xmlattr, urlize) or growing text by a number (center, indent, format)
# is left out.
ALLOWED_FILTERS: Final = ("default", "d", "upper", "lower", "title", "capitalize", "trim", "truncate", "replace",
                          "striptags", "escape", "e", "length", "count", "wordcount", "first", "last", "int", "float",
                          "round", "abs", "string", "urlencode")
# What a template may be made of: text, {{ expressions }} over the merge fields, {% if %} and
# {% filter %}. Everything else could repeat ({% for %}, {% macro %}), grow text exponentially
# ({% set x = x ~ x %} over and over), reach outside the template ({% include %}) or turn
# escaping off ({% autoescape false %}).
_ALLOWED_NODES: Final = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.FilterBlock, nodes.Name, nodes.Const,
    nodes.Filter, nodes.Test, nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos,
    nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.Concat,
    nodes.CondExpr, nodes.Scope, nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair, nodes.Getitem, nodes.Slice,
    nodes.Keyword,
)
_STATEMENT_NAMES: Final[dict[type[nodes.Node], str]] = {
    nodes.For: "{% for %}", nodes.Macro: "{% macro %}", nodes.CallBlock: "{% call %}",
    nodes.Include: "{% include %}", nodes.Import: "{% import %}", nodes.FromImport: "{% from ... import %}",
    nodes.Extends: "{% extends %}", nodes.Block: "{% block %}", nodes.Assign: "{% set %}",
    nodes.AssignBlock: "{% set %}", nodes.With: "{% with %}", nodes.ScopedEvalContextModifier: "{% autoescape %}",
    nodes.EvalContextModifier: "{% autoescape %}", nodes.ExprStmt: "{% do %}", nodes.Continue: "{% continue %}",
    nodes.Break: "{% break %}",
}
MAX_NODES: Final = 5000  # parts of one template (expressions, filters, text runs)
_MAX_INT_BITS: Final = 4096
MAX_OUTPUT: Final = 2_000_000  # characters of one rendered part; far above any real email
_TEMPLATE_CACHE_SIZE: Final = 256


class TemplateError(ValueError):
    """A template that cannot be used or filled in; `message` names the part, the line and the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _capped(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_OUTPUT:
        raise SecurityError(f"the text grew beyond {MAX_OUTPUT:,} characters")
    return value


def _capped_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps jinja's pass_environment / pass_eval_context marks
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _capped(func(*args, **kwargs))
    return wrapper


@pass_eval_context
def _replace(eval_ctx: EvalContext, value: Any, old: Any, new: Any, count: int | None = None) -> Any:
    """jinja's `replace` (which escapes a plain replacement put into markup), refusing before it
    builds a result larger than MAX_OUTPUT: "x" | replace("", long) multiplies lengths."""
    text, old_s, new_s = str(value), str(old), str(new)
    found = len(text) + 1 if old_s == "" else text.count(old_s)
    if count is not None and count >= 0:
        found = min(found, count)
    # escaping may grow the replacement up to 6 times ('"' -> '&#34;')
    if len(text) + found * 6 * len(new_s) > MAX_OUTPUT:
        raise SecurityError(f"the text grew beyond {MAX_OUTPUT:,} characters")
    return _capped(do_replace(eval_ctx, value, old, new, count))


class _EmailEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox of email templates: the merge dict and text filters, nothing else."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=ChainableUndefined, keep_trailing_newline=True,
                         auto_reload=False, cache_size=0)
        self.globals.clear()
        kept = {name: _capped_filter(self.filters[name]) for name in ALLOWED_FILTERS if name != "replace"}
        kept["replace"] = _replace
        self.filters = kept
        self.tests = {name: self.tests[name] for name in ("defined", "undefined", "none", "number", "string",
                                                          "odd", "even", "divisibleby", "eq", "ne", "lt", "le",
                                                          "gt", "ge", "in", "==", "!=", "<", "<=", ">", ">=")
                      if name in self.tests}

    def getattr(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"'.{attribute}' cannot be used: email templates reach only their merge fields")

    def getitem(self, obj: Any, argument: Any) -> Any:
        # Characters of a value ({{ name[0] }}) and keys of a literal {...} are fine; a string key on
        # anything else is attribute access in disguise (''['__class__']).
        if isinstance(obj, str | list | tuple) and isinstance(argument, int | slice) and not isinstance(argument, bool):
            try:
                return obj[argument]
            except IndexError:
                return self.undefined(obj=obj, name=argument)
        if isinstance(obj, dict):
            return obj[argument] if argument in obj else self.undefined(obj=obj, name=argument)
        if isinstance(obj, ChainableUndefined):
            return obj
        raise SecurityError(f"'[{argument!r}]' cannot be used: email templates reach only their merge fields")

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise SecurityError("calling a value is not available in email templates")

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "%" and isinstance(left, str):
            raise SecurityError("'%' formatting is not available in email templates")
        ints = isinstance(left, int) and isinstance(right, int)
        if op == "**" and isinstance(right, int | float) and (
                abs(right) > 64 or (ints and left.bit_length() * abs(right) > _MAX_INT_BITS)):
            raise SecurityError("this power is too large for an email template")
        if op == "*" and ints and left.bit_length() + right.bit_length() > _MAX_INT_BITS:
            raise SecurityError("this product is too large for an email template")
        if op == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                    raise SecurityError(f"the text grew beyond {MAX_OUTPUT:,} characters")
        return {"*": operator.mul, "**": operator.pow, "%": operator.mod}[op](left, right)


_HTML_ENV = _EmailEnvironment(autoescape=True)
_TEXT_ENV = _EmailEnvironment(autoescape=False)


def field_names(custom_keys: Iterable[str] = ()) -> list[str]:
    """The names a template may use: the standard merge fields, then custom_<key> per custom field."""
    return [*MERGE_FIELDS, *(f"{CUSTOM_PREFIX}{key}" for key in custom_keys)]


def _is_field(name: str, custom_keys: frozenset[str] | None) -> bool:
    if name in MERGE_FIELDS:
        return True
    if not name.startswith(CUSTOM_PREFIX):
        return False
    key = name[len(CUSTOM_PREFIX):]
    return key in custom_keys if custom_keys is not None else bool(_CUSTOM_KEY.match(key))


@dataclass(frozen=True)
class TemplateProblem:
    """One problem of a template, kept apart as a message template and its values so the pages can
    translate it (`problem % params`); `message` is the English sentence with its part and line."""

    field: str  # "subject", "html_body" or "text_body"
    line: int
    problem: str  # a %-format ("{{ %(name)s }} is not a field you can use; ...")
    params: Mapping[str, Any]

    @property
    def part(self) -> str:
        return _PARTS[self.field]

    @property
    def text(self) -> str:
        return self.problem % dict(self.params)

    @property
    def message(self) -> str:
        return f"{self.part}, line {self.line}: {self.text}"


_PARTS: Final = {"subject": "Subject", "html_body": "HTML body", "text_body": "Text body"}
_ATTRIBUTE = "'.%(attr)s' cannot be used: email templates reach only their merge fields (use a filter such as | upper)"
_KEY = "'[%(key)s]' cannot be used: email templates reach only their merge fields"
_CALL = "calling a value is not available in email templates"
_STATEMENT = "%(statement)s is not available in email templates; use {%% if %%} and the merge fields"
_OTHER = "this part of the template (%(node)s) is not available in email templates"
_FILTER = "the filter '%(name)s' is not available; filters: %(choices)s"
_TEST = "the test '%(name)s' is not available; tests: %(choices)s"
_UNKNOWN = "{{ %(name)s }} is not a field you can use; fields: %(fields)s"
_TOO_COMPLEX = "the template is too complex (more than %(max)s parts); split it or simplify it"
_SYNTAX = "%(detail)s"


def _structure_problems(tree: nodes.Template) -> list[tuple[int, str, dict[str, Any]]]:
    """What the sandbox refuses, found before rendering: (line, problem, params)."""
    found: list[tuple[int, str, dict[str, Any]]] = []
    every = list(tree.find_all(nodes.Node))
    if len(every) > MAX_NODES:
        return [(1, _TOO_COMPLEX, {"max": f"{MAX_NODES:,}"})]
    for node in every:
        lineno = getattr(node, "lineno", 1) or 1
        if isinstance(node, nodes.Getattr):
            found.append((lineno, _ATTRIBUTE, {"attr": node.attr}))
        elif isinstance(node, nodes.Call):
            found.append((lineno, _CALL, {}))
        elif type(node) in _STATEMENT_NAMES:
            found.append((lineno, _STATEMENT, {"statement": _STATEMENT_NAMES[type(node)]}))
        elif not isinstance(node, _ALLOWED_NODES):
            found.append((lineno, _OTHER, {"node": type(node).__name__}))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.append((lineno, _KEY, {"key": repr(node.arg.value)}))
        elif isinstance(node, nodes.Filter) and node.name not in _HTML_ENV.filters:
            found.append((lineno, _FILTER, {"name": node.name, "choices": ", ".join(ALLOWED_FILTERS)}))
        elif isinstance(node, nodes.Test) and node.name not in _HTML_ENV.tests:
            found.append((lineno, _TEST, {"name": node.name, "choices": ", ".join(_HTML_ENV.tests)}))
    return found


def _check_part(field: str, source: str, env: _EmailEnvironment, custom_keys: frozenset[str] | None,
                choices: str) -> list[TemplateProblem]:
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        return [TemplateProblem(field, exc.lineno, _SYNTAX, {"detail": exc.message or str(exc)})]
    found = _structure_problems(tree)
    reported: set[str] = set()
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in reported and not _is_field(name.name, custom_keys):
            reported.add(name.name)
            found.append((name.lineno, _UNKNOWN, {"name": name.name, "fields": choices}))
    problems = [TemplateProblem(field, line, problem, params)
                for line, problem, params in sorted(found, key=lambda item: item[0])]
    if not problems:
        try:
            env.compile(source)
        except JinjaTemplateError as exc:
            return [TemplateProblem(field, getattr(exc, "lineno", None) or 1, _SYNTAX,
                                    {"detail": exc.message or str(exc)})]
    return problems


def template_problems(subject: str, html: str, text: str, *,
                      custom_keys: Iterable[str] | None = None) -> list[TemplateProblem]:
    """The problems of a template by part and line (see check_template), for forms that show each
    at its field and translate it."""
    keys = frozenset(custom_keys) if custom_keys is not None else None
    choices = ", ".join(field_names(sorted(keys) if keys is not None else ()))
    if keys is None:
        choices += f", {CUSTOM_PREFIX}<custom field key>"
    problems: list[TemplateProblem] = []
    for field, source, env in (("subject", subject, _TEXT_ENV), ("html_body", html, _HTML_ENV),
                               ("text_body", text, _TEXT_ENV)):
        problems.extend(_check_part(field, source, env, keys, choices))
    return problems


def check_template(subject: str, html: str, text: str, *, custom_keys: Iterable[str] | None = None) -> list[str]:
    """The problems of a template, each naming its part and line, for people; [] when it can be used.

    `custom_keys` are the workspace's contact custom field keys (custom_<key> names); None accepts
    any well-formed custom_<key> (when the caller does not know the workspace's fields).
    """
    return [p.message for p in template_problems(subject, html, text, custom_keys=custom_keys)]


def fields_used(subject: str, html: str, text: str) -> set[str]:
    """The names a template reads (e.g. to know whether a preview discloses the email address);
    parts that do not parse count as using nothing."""
    used: set[str] = set()
    for source in (subject, html, text):
        try:
            tree = _TEXT_ENV.parse(source)
        except TemplateSyntaxError:
            continue
        used.update(n.name for n in tree.find_all(nodes.Name) if n.ctx == "load")
    return used


def _where(part: str, line: int) -> str:
    return f"{part}, line {line}"


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def _compiled(part: str, source: str, html: bool) -> tuple[Any, bool]:
    """(compiled template, whether it uses unsubscribe_url); cached, as a campaign renders one template
    for every recipient. Raises TemplateError for what the sandbox refuses."""
    env = _HTML_ENV if html else _TEXT_ENV
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{_where(part, exc.lineno)}: {exc.message}") from None
    refused = _structure_problems(tree)
    if refused:
        line, problem, params = refused[0]
        raise TemplateError(f"{_where(part, line)}: {problem % params}")
    uses_unsubscribe = any(n.name == "unsubscribe_url" for n in tree.find_all(nodes.Name) if n.ctx == "load")
    try:
        return env.from_string(tree), uses_unsubscribe
    except JinjaTemplateError as exc:
        raise TemplateError(f"{_where(part, getattr(exc, 'lineno', None) or 1)}: {exc.message or exc}") from None


def _template_line(exc: BaseException) -> int:
    """The template line a runtime error happened on (jinja rewrites tracebacks to name it)."""
    line = 1
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _explain(exc: BaseException) -> str:
    if isinstance(exc, ZeroDivisionError):
        return "division by zero"
    if isinstance(exc, RecursionError):
        return "the template nests too deeply"
    if isinstance(exc, JinjaTemplateError):
        return exc.message or str(exc)
    return str(exc) or type(exc).__name__


def _fill(part: str, source: str, html: bool, context: Mapping[str, Any]) -> tuple[str, bool]:
    template, uses_unsubscribe = _compiled(part, source, html)
    try:
        result = template.render(context)
    except (JinjaTemplateError, ArithmeticError, TypeError, ValueError, LookupError, RecursionError,
            MemoryError) as exc:
        raise TemplateError(f"{_where(part, _template_line(exc))}: the template could not be filled in: "
                            f"{_explain(exc)}") from None
    if len(result) > MAX_OUTPUT:
        raise TemplateError(f"{part}: the email would be longer than {MAX_OUTPUT:,} characters")
    return result, uses_unsubscribe


def _context(merge: Mapping[str, Any], unsubscribe_url: str) -> dict[str, Any]:
    """The merge dict as templates see it: empty values left out (so `default` applies), and only
    plain values (anything else becomes its text)."""
    context: dict[str, Any] = {}
    for key, value in merge.items():
        if not isinstance(key, str) or not key.isidentifier() or value is None or value == "":
            continue
        context[key] = value if isinstance(value, str | int | float | Decimal) else str(value)
    context["unsubscribe_url"] = unsubscribe_url
    return context


_LINK = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_EXPRESSION = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_LEFT_MARKUP = re.compile(r"</?[A-Za-z!]")  # a tag the HTML reader could not close, left as text
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _track_links(body: str, click_url: Callable[[str], str], unsubscribe_url: str) -> str:
    def rewrite(match: re.Match[str]) -> str:
        href = html_lib.unescape(match.group(3)).strip()
        if not href.lower().startswith(("http://", "https://")) or href == unsubscribe_url:
            return match.group(0)
        try:
            tracked = click_url(href)
        except ValueError:  # a link too long to carry in a signed URL stays as it is, untracked
            return match.group(0)
        return f"{match.group(1)}{match.group(2)}{html_lib.escape(tracked, quote=True)}{match.group(2)}"
    return _LINK.sub(rewrite, body)


def _before_body_end(body: str, addition: str) -> str:
    ends = list(_BODY_END.finditer(body))
    if not ends:
        return body + addition
    at = ends[-1].start()
    return body[:at] + addition + body[at:]


_FOOTER = {
    "en": ("Don't want these emails?", "Unsubscribe"),
    "zh-CN": ("不想再收到这类邮件？", "退订"),
}


def _footer(locale: str) -> tuple[str, str]:
    return _FOOTER.get(locale, _FOOTER["en"])


class _TextFromHtml(HTMLParser):
    """The text of an HTML body, for the plain-text part when a template has none."""

    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol",
                         "blockquote", "hr", "section", "article", "header", "footer"})
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping = 0
        self._links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.out.append("\n")
        if tag == "a":
            self._links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.out.append("\n")
        elif tag == "a" and self._links:
            href = self._links.pop()
            # a link, or (reading a template) an expression that makes one: {{ unsubscribe_url }}
            if (href.lower().startswith(("http://", "https://")) or href.startswith("{{")) \
                    and not "".join(self.out).endswith(href):
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.out.append(data)


def html_to_text(body: str) -> str:
    """A readable plain-text version of an HTML email (links as "text (url)")."""
    parser = _TextFromHtml()
    parser.feed(body)
    parser.close()
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


@functools.lru_cache(maxsize=_TEMPLATE_CACHE_SIZE)
def _text_source(html: str) -> str | None:
    """The text version of an HTML template as a text template, made once per template: reading
    HTML is the slow part of making a text body, and a campaign renders one template for every
    recipient. None when that cannot be done faithfully (an expression inside an attribute
    other than a link's, markup inside an expression, a result that does not compile)."""
    source = html_to_text(html)
    # markup inside an expression ({{ '<b>' ~ name }}) is cut apart by the HTML reader: then the
    # text would lose what the expression says, so read the filled-in HTML instead
    if any(expression not in source for expression in _EXPRESSION.findall(html)) \
            or _LEFT_MARKUP.search(_EXPRESSION.sub("", source)):
        return None
    try:
        _compiled("Text body", source, False)
    except TemplateError:
        return None
    return source


def _text_from_html(html: str, html_out: str, context: Mapping[str, Any]) -> str:
    """The text body of a template without one: its HTML template read as text and filled in, or
    (when that cannot be done) the filled-in HTML read as text."""
    if not html_out:
        return ""
    source = _text_source(html)
    if source is not None:
        try:
            return _fill("Text body", source, False, context)[0]
        except TemplateError:
            pass
    return html_to_text(html_out)


def render(subject: str, html: str, text: str, merge: Mapping[str, Any], *, unsubscribe_url: str,
           open_pixel_url: str | None, click_url: Callable[[str], str] | None,
           locale: str = "en") -> tuple[str, str, str]:
    """(subject, HTML, text) of one recipient's email; raises TemplateError when it cannot be filled in.

    The unsubscribe link is added to each body that does not use `unsubscribe_url` (HTML: a footer
    paragraph before </body>; text: a last line, in the workspace's `locale`); with `click_url`
    the http(s) links of the HTML (not mailto:, not the unsubscribe link) become tracked links;
    with `open_pixel_url` a 1x1 image goes before </body>. An empty text template gets the text
    of the HTML; an empty HTML template stays empty (a text-only email).
    """
    context = _context(merge, unsubscribe_url)
    subject_out, _ = _fill("Subject", subject, False, context)
    subject_out = " ".join(subject_out.split())
    lead, label = _footer(locale)

    html_out = ""
    html_uses_unsubscribe = False
    if html.strip():
        html_out, html_uses_unsubscribe = _fill("HTML body", html, True, context)
    if text.strip():
        text_out, text_uses_unsubscribe = _fill("Text body", text, False, context)
    else:
        text_out = _text_from_html(html, html_out, context)
        text_uses_unsubscribe = html_uses_unsubscribe
    if not text_uses_unsubscribe:
        text_out = text_out.rstrip("\n") + ("\n\n" if text_out.strip() else "") + f"{label}: {unsubscribe_url}\n"
    if html_out:
        if click_url is not None:
            html_out = _track_links(html_out, click_url, unsubscribe_url)
        addition = ""
        if not html_uses_unsubscribe:
            addition += (f'<p style="margin:24px 0 0;font-size:12px;color:#6b7280">{html_lib.escape(lead)} '
                         f'<a href="{html_lib.escape(unsubscribe_url, quote=True)}" style="color:#6b7280">'
                         f"{html_lib.escape(label)}</a></p>")
        if open_pixel_url:
            addition += (f'<img src="{html_lib.escape(open_pixel_url, quote=True)}" width="1" height="1" alt=""'
                         ' style="display:block;width:1px;height:1px;border:0">')
        if addition:
            html_out = _before_body_end(html_out, addition)
    return subject_out, html_out, text_out


def _merge_text(value: Any) -> str | int | float | Decimal | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | int | float | Decimal):
        return value
    return str(value)


def split_name(name: str) -> tuple[str, str]:
    """(first_name, last_name) of a contact's one name field: "Ada Lovelace" -> ("Ada", "Lovelace").
    A name without spaces (张伟, Cher) is all first name: guessing where a Chinese surname ends
    (欧阳娜娜) would greet people wrongly."""
    parts = name.split()
    if len(parts) < 2:
        return (parts[0] if parts else ""), ""
    return parts[0], " ".join(parts[1:])


def merge_values(contact_row: Mapping[str, Any], custom_fields: Iterable[Any] = (), *,
                 workspace_name: str = "") -> dict[str, Any]:
    """The frozen merge dict of a recipient: the contact's fields as plain text, custom fields as
    custom_<key>. Fields absent from `contact_row` (e.g. hidden from a role) are left out, so they
    render their template default. `custom_fields` are CustomField definitions or plain keys."""
    name = str(contact_row.get("name") or "")
    first, last = split_name(name) if "name" in contact_row else ("", "")
    values: dict[str, Any] = {
        "name": name, "first_name": first, "last_name": last,
        "email": contact_row.get("email"), "company_name": contact_row.get("company_name"),
        "title": contact_row.get("title"), "workspace_name": workspace_name,
    }
    custom = contact_row.get("custom") or {}
    if isinstance(custom, Mapping):
        for definition in custom_fields:
            key = definition if isinstance(definition, str) else definition.key
            values[f"{CUSTOM_PREFIX}{key}"] = custom.get(key)
    return {k: v for k, v in ((k, _merge_text(v)) for k, v in values.items()) if v is not None}
