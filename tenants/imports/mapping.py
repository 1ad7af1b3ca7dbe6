"""Which column of an import file fills which field: header names in English and Chinese, the
HubSpot and Salesforce export layouts, and the workspace's custom fields.

Headers are compared after `normalize_header` (case, spaces, "_" and "-", full-width forms), so
"E-mail", "e_mail" and "Ｅ－ｍａｉｌ" are one header. A suggestion is made in three passes, each
target field used at most once and each column once, the first column winning within a pass:
1. the workspace's custom fields, by label or key: the workspace's own words are the most specific
   (a custom field labelled "Lead Source" takes that column before the built-in source field);
2. the detected export preset (HubSpot, Salesforce): its layout knows that HubSpot's "Phone Number"
   is the phone even when "Mobile Phone Number" comes first;
3. the synonyms below, tried on the whole header and then without a bracketed note or a trailing
   "*" (手机号（必填）, Email *).
Headers nothing matches are left out: the person maps them, or they are ignored.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

_SEPARATORS = re.compile(r"[\s_\-\u2010-\u2015]+")
_TRAILING_MARKS = re.compile(r"[\s*:：]+$")
_BRACKETED = re.compile(r"\s*[(\[{（【][^)\]}）】]*[)\]}）】]\s*")


def normalize_header(text: str) -> str:
    """A header as it is compared: full-width forms made ASCII (NFKC), case folded, runs of spaces,
    "_" and "-" made one space, ends trimmed, and a trailing "*" or ":" (required-field marks)
    dropped."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _TRAILING_MARKS.sub("", _SEPARATORS.sub(" ", folded)).strip()


def header_signature(headers: list[str]) -> str:
    """A stable digest of a header row, for remembering the mapping chosen for files laid out the
    same way: the same headers in the same order, whatever their case or spacing."""
    joined = "\x1f".join(normalize_header(header) for header in headers)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


# -- synonyms ------------------------------------------------------------------------------------

_PERSON_NAME = ("name", "full name", "contact name", "contact", "customer name", "姓名", "名称", "客户名称",
                "联系人", "联系人姓名", "客户姓名", "全名", "客户")
_FIRST_NAME = ("first name", "firstname", "given name", "forename", "名", "名字")
_LAST_NAME = ("last name", "lastname", "surname", "family name", "姓", "姓氏")
_EMAIL = ("email", "e mail", "email address", "e mail address", "mail", "邮箱", "电子邮件", "邮件地址", "电子邮箱",
          "邮箱地址", "电邮", "邮件")
_PHONE = ("phone", "phone number", "telephone", "tel", "mobile", "mobile phone", "mobile number", "mobile phone number",
          "cell", "cell phone", "work phone", "手机", "手机号", "手机号码", "电话", "联系电话", "电话号码", "座机",
          "移动电话", "联系方式")
_COMPANY = ("company", "company name", "account", "account name", "organization", "organisation",
            "organization name", "employer", "公司", "公司名称", "单位", "单位名称", "企业名称", "企业", "工作单位",
            "所在公司", "公司名")
_TITLE = ("title", "job title", "position", "job", "role", "职位", "职务", "头衔", "岗位")
_SOURCE = ("source", "lead source", "original source", "channel", "来源", "线索来源", "客户来源", "渠道")
_TAGS = ("tags", "tag", "labels", "label", "标签")
_NOTES = ("notes", "note", "description", "comments", "comment", "remarks", "memo", "备注", "描述", "说明",
          "备注信息")
_LIFECYCLE = ("lifecycle stage", "lifecycle", "stage", "生命周期阶段", "生命周期", "阶段", "客户阶段")
_CONSENT = ("consent", "marketing consent", "marketing opt in", "opt in", "营销许可", "营销同意", "同意营销",
            "是否同意营销")
_STATUS = ("status", "lead status", "状态", "线索状态", "跟进状态")
_DOMAIN = ("domain", "website", "web site", "website url", "url", "company domain name", "homepage", "网站", "域名",
           "官网", "网址", "公司网站")
_INDUSTRY = ("industry", "sector", "行业", "所属行业")
_SIZE = ("size", "company size", "employees", "number of employees", "headcount", "规模", "人数", "员工人数",
         "公司规模", "企业规模")
_ADDRESS = ("address", "street", "street address", "地址", "详细地址", "公司地址", "通讯地址")
_CITY = ("city", "town", "城市", "所在城市", "市")
_COUNTRY = ("country", "country/region", "country region", "国家", "国家/地区", "国家地区")
_COMPANY_PHONE = ("phone", "phone number", "telephone", "tel", "company phone", "电话", "联系电话", "公司电话",
                  "座机", "电话号码")

# object type -> target -> synonyms; the targets each object type has (see targets.py)
_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "contacts": {
        "name": _PERSON_NAME, "first_name": _FIRST_NAME, "last_name": _LAST_NAME, "email": _EMAIL,
        "phone": _PHONE, "company_name": _COMPANY, "title": _TITLE, "lifecycle_stage": _LIFECYCLE,
        "source": _SOURCE, "tags": _TAGS, "notes": _NOTES, "marketing_consent": _CONSENT,
    },
    "companies": {
        "name": ("name", *_COMPANY, "客户名称", "名称", "客户"), "domain": _DOMAIN, "industry": _INDUSTRY,
        "size": _SIZE, "phone": _COMPANY_PHONE, "address": _ADDRESS, "city": _CITY, "country": _COUNTRY,
        "notes": _NOTES, "tags": _TAGS,
    },
    "leads": {
        "name": _PERSON_NAME, "first_name": _FIRST_NAME, "last_name": _LAST_NAME, "company_name": _COMPANY,
        "title": _TITLE, "email": _EMAIL, "phone": _PHONE, "status": _STATUS, "source": _SOURCE,
        "notes": _NOTES, "tags": _TAGS,
    },
}


def _lookup(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """normalized synonym -> target; the field's own name counts too ("first_name")."""
    found: dict[str, str] = {}
    for target, words in table.items():
        for word in (target, *words):
            found.setdefault(normalize_header(word), target)
    return found


_BY_HEADER: dict[str, dict[str, str]] = {kind: _lookup(table) for kind, table in _SYNONYMS.items()}

# -- presets: the export layouts of other CRMs ---------------------------------------------------

# HubSpot's export headers (contacts, companies; its leads are contacts with a lead status).
_HUBSPOT_PEOPLE = {
    "First Name": "first_name", "Last Name": "last_name", "Email": "email", "Phone Number": "phone",
    "Company Name": "company_name", "Associated Company": "company_name", "Job Title": "title",
    "Original Source": "source", "Message": "notes",
}
_HUBSPOT = {
    "contacts": {**_HUBSPOT_PEOPLE, "Lifecycle Stage": "lifecycle_stage"},
    "leads": {**_HUBSPOT_PEOPLE, "Lead Status": "status"},
    "companies": {
        "Company name": "name", "Name": "name", "Company Domain Name": "domain", "Website URL": "domain",
        "Industry": "industry", "Number of Employees": "size", "Phone Number": "phone",
        "Street Address": "address", "City": "city", "Country/Region": "country", "Description": "notes",
    },
}
# Salesforce's report and Data Export headers: labels ("Account Name") and API names ("AccountId"
# is an id, not a name, so it is left out).
_SALESFORCE_PEOPLE = {
    "First Name": "first_name", "FirstName": "first_name", "Last Name": "last_name", "LastName": "last_name",
    "Email": "email", "Phone": "phone", "Mobile": "phone", "MobilePhone": "phone", "Title": "title",
    "Lead Source": "source", "LeadSource": "source", "Description": "notes",
}
_SALESFORCE = {
    "contacts": {**_SALESFORCE_PEOPLE, "Account Name": "company_name", "Account: Account Name": "company_name"},
    "leads": {**_SALESFORCE_PEOPLE, "Company / Account": "company_name", "Company": "company_name",
              "Lead Status": "status", "Status": "status"},
    "companies": {
        "Account Name": "name", "Name": "name", "Website": "domain", "Industry": "industry", "Employees": "size",
        "NumberOfEmployees": "size", "Phone": "phone", "Billing Street": "address", "BillingStreet": "address",
        "Billing City": "city", "BillingCity": "city", "Billing Country": "country", "BillingCountry": "country",
        "Description": "notes",
    },
}
PRESETS: dict[str, dict[str, dict[str, str]]] = {
    preset: {kind: {normalize_header(header): target for header, target in layout.items()}
             for kind, layout in layouts.items()}
    for preset, layouts in (("hubspot", _HUBSPOT), ("salesforce", _SALESFORCE))
}
# Headers only that CRM's exports have (generic ones like "Email" prove nothing). Two of them,
# and more than the other CRM's, identify the layout.
_MARKERS: dict[str, frozenset[str]] = {
    preset: frozenset(normalize_header(header) for header in headers)
    for preset, headers in (
        ("hubspot", ("Record ID", "Contact owner", "Company owner", "Lifecycle Stage", "Lead Status",
                     "Create Date", "Last Activity Date", "Last Modified Date", "Associated Company",
                     "Original Source", "Original Source Drill-Down 1", "Marketing contact status",
                     "Company Domain Name", "Country/Region", "HubSpot Owner")),
        ("salesforce", ("Contact ID", "Lead ID", "Account ID", "Contact Owner", "Lead Owner", "Account Owner",
                        "Account Name", "Lead Source", "Mailing Street", "Mailing City", "Mailing State/Province",
                        "Mailing Zip/Postal Code", "Mailing Country", "Billing Street", "Billing City",
                        "Billing Country", "Company / Account", "Email Opt Out",
                        "FirstName", "LastName", "AccountId", "MailingCity", "LeadSource", "OwnerId")),
    )
}


def detect_preset(object_type: str, headers: list[str]) -> str | None:
    """"hubspot" or "salesforce" when the headers are that CRM's export layout, else None."""
    present = {normalize_header(header) for header in headers}
    scores = {preset: len(present & markers) for preset, markers in _MARKERS.items()
              if object_type in PRESETS[preset]}
    if not scores:
        return None
    best = max(scores, key=lambda preset: scores[preset])
    others = [score for preset, score in scores.items() if preset != best]
    if scores[best] >= 2 and all(score < scores[best] for score in others):
        return best
    return None


# -- suggestions ---------------------------------------------------------------------------------


def _variants(header: str) -> Iterable[str]:
    """The normalized header, then the same without bracketed notes (手机号（必填） -> 手机号)."""
    normalized = normalize_header(header)
    yield normalized
    bare = normalize_header(_BRACKETED.sub(" ", unicodedata.normalize("NFKC", header)))
    if bare and bare != normalized:
        yield bare


def suggest_mapping(object_type: str, headers: list[str],
                    custom: list[tuple[str, str]]) -> tuple[dict[int, str], str]:
    """Column index -> target field for a file's headers, and where the suggestion came from
    ("hubspot", "salesforce" or "headers"). `custom` is the workspace's custom fields of this
    object type as (key, label); they are matched by label or key and map to "custom.<key>"."""
    synonyms = _BY_HEADER.get(object_type)
    if synonyms is None:
        raise ValueError(f"unknown object type {object_type!r}")
    mapping: dict[int, str] = {}
    used: set[str] = set()

    def assign(table: dict[str, str]) -> None:
        for index, header in enumerate(headers):
            if index in mapping:
                continue
            target = next((table[form] for form in _variants(header) if form in table), None)
            if target is not None and target not in used:
                mapping[index] = target
                used.add(target)

    custom_table: dict[str, str] = {}
    for key, label in custom:
        for word in (label, key):
            if normalize_header(word):
                custom_table.setdefault(normalize_header(word), f"custom.{key}")
    assign(custom_table)
    preset = detect_preset(object_type, headers)
    if preset is not None:
        assign(PRESETS[preset][object_type])
    assign(synonyms)
    return dict(sorted(mapping.items())), preset or "headers"
