"""Suggested column mappings for imports (issue 7, "Column mapping screen"): English, Chinese and
mixed headers, the HubSpot and Salesforce export layouts, custom fields, each target once, and
the header signature under which a chosen mapping is remembered."""

from __future__ import annotations

import pytest

from kith.tenants.imports.mapping import (
    PRESETS,
    detect_preset,
    header_signature,
    normalize_header,
    suggest_mapping,
)
from kith.tenants.imports.targets import TARGETS

# The header rows those CRMs write in their contact exports.
HUBSPOT_CONTACTS = ["Record ID", "First Name", "Last Name", "Email", "Phone Number", "Company Name", "Job Title",
                    "Lifecycle Stage", "Contact owner", "Create Date"]
SALESFORCE_CONTACTS = ["First Name", "Last Name", "Title", "Account Name", "Email", "Phone", "Mobile", "Lead Source",
                       "Contact Owner", "Mailing City"]


def test_normalize_header() -> None:
    assert normalize_header("  First_Name ") == "first name"
    assert normalize_header("E-Mail") == normalize_header("e_mail") == normalize_header("E  mail") == "e mail"
    assert normalize_header("Ｅ－ｍａｉｌ") == "e mail"  # full-width forms
    assert normalize_header("手机号：") == normalize_header("手机号 *") == "手机号"
    assert normalize_header("（备注）") == "(备注)"


def test_header_signature_is_stable_under_case_and_spacing() -> None:
    base = header_signature(["Name", "Email", "Phone Number"])
    assert header_signature([" name", "EMAIL ", "phone_number"]) == base
    assert header_signature(["Ｎａｍｅ", "E-mail", "phone-number"]) != base  # "e mail" is another header
    assert header_signature(["Email", "Name", "Phone Number"]) != base  # order matters: indexes are mapped
    assert header_signature(["Name", "Email"]) != base
    assert len(base) == 64 and base == header_signature(["Name", "Email", "Phone Number"])


def test_english_headers() -> None:
    headers = ["Full name", "E-mail", "Mobile", "Company", "Job title", "Tags", "Description", "Favourite colour"]
    mapping, source = suggest_mapping("contacts", headers, [])
    assert source == "headers"
    assert mapping == {0: "name", 1: "email", 2: "phone", 3: "company_name", 4: "title", 5: "tags", 6: "notes"}


def test_chinese_headers() -> None:
    headers = ["姓名", "邮箱", "手机号（必填）", "公司名称", "职位", "来源", "标签", "备注", "生命周期阶段", "营销许可"]
    mapping, _ = suggest_mapping("contacts", headers, [])
    assert mapping == {0: "name", 1: "email", 2: "phone", 3: "company_name", 4: "title", 5: "source", 6: "tags",
                       7: "notes", 8: "lifecycle_stage", 9: "marketing_consent"}
    split, _ = suggest_mapping("contacts", ["姓", "名", "电话"], [])
    assert split == {0: "last_name", 1: "first_name", 2: "phone"}


def test_mixed_headers_and_each_target_once() -> None:
    mapping, source = suggest_mapping("leads", ["Name", "手机", "电话", "Email", "邮箱", "线索状态", "Company"], [])
    assert source == "headers"
    # the first "phone" and "email" columns win; the second ones are left for the person to map
    assert mapping == {0: "name", 1: "phone", 3: "email", 5: "status", 6: "company_name"}
    assert len(set(mapping.values())) == len(mapping)


def test_companies_headers() -> None:
    mapping, _ = suggest_mapping("companies", ["公司名称", "网站", "行业", "规模", "地址", "城市", "国家", "电话"], [])
    assert mapping == {0: "name", 1: "domain", 2: "industry", 3: "size", 4: "address", 5: "city", 6: "country",
                       7: "phone"}


def test_hubspot_contact_export_is_detected() -> None:
    assert detect_preset("contacts", HUBSPOT_CONTACTS) == "hubspot"
    # "Mobile Phone Number" first: the layout still knows "Phone Number" is the phone
    headers = ["Mobile Phone Number", *HUBSPOT_CONTACTS]
    mapping, source = suggest_mapping("contacts", headers, [])
    assert source == "hubspot"
    assert {headers[i]: target for i, target in mapping.items()} == {
        "First Name": "first_name", "Last Name": "last_name", "Email": "email", "Phone Number": "phone",
        "Company Name": "company_name", "Job Title": "title", "Lifecycle Stage": "lifecycle_stage"}


def test_salesforce_contact_export_is_detected() -> None:
    assert detect_preset("contacts", SALESFORCE_CONTACTS) == "salesforce"
    mapping, source = suggest_mapping("contacts", SALESFORCE_CONTACTS, [])
    assert source == "salesforce"
    assert {SALESFORCE_CONTACTS[i]: target for i, target in mapping.items()} == {
        "First Name": "first_name", "Last Name": "last_name", "Title": "title", "Account Name": "company_name",
        "Email": "email", "Phone": "phone", "Lead Source": "source"}
    accounts = ["Account Name", "Account Owner", "Industry", "Website", "Phone", "Billing City", "Billing Country"]
    assert suggest_mapping("companies", accounts, [])[0] == {0: "name", 2: "industry", 3: "domain", 4: "phone",
                                                             5: "city", 6: "country"}


def test_plain_files_are_not_taken_for_a_preset() -> None:
    assert detect_preset("contacts", ["Name", "Email", "Phone Number", "Job Title", "Company Name"]) is None
    assert detect_preset("contacts", ["姓名", "手机", "邮箱"]) is None
    assert detect_preset("contacts", ["Contact Owner", "Email"]) is None  # both CRMs have it: no winner


def test_custom_fields_are_matched_by_label_or_key() -> None:
    custom = [("wechat", "微信号"), ("vip_level", "VIP level"), ("source_detail", "Lead Source")]
    mapping, _ = suggest_mapping("contacts", ["姓名", "微信号", "VIP_Level", "Lead Source", "Column 5", "wechat"],
                                 custom)
    # the workspace's own field takes "Lead Source"; "wechat" (the key) loses to the earlier label column
    assert mapping == {0: "name", 1: "custom.wechat", 2: "custom.vip_level", 3: "custom.source_detail"}


@pytest.mark.parametrize("object_type", ["contacts", "companies", "leads"])
def test_every_suggested_target_exists(object_type: str) -> None:
    fields = {field.name for field in TARGETS[object_type].fields}
    for layouts in PRESETS.values():
        assert set(layouts[object_type].values()) <= fields
    headers = ["Name", "First name", "Last name", "Email", "Phone", "Company", "Title", "Lifecycle stage", "Source",
               "Tags", "Notes", "Consent", "Status", "Website", "Industry", "Employees", "Address", "City", "Country"]
    mapping, _ = suggest_mapping(object_type, headers, [])
    assert set(mapping.values()) <= fields
    assert set(mapping.values()) == fields  # and every field is reachable by an English header


def test_unknown_object_type() -> None:
    with pytest.raises(ValueError, match="unknown object type"):
        suggest_mapping("deals", ["Name"], [])
