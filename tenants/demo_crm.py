"""The demo workspace's CRM records beyond contacts: companies (the contacts' employers, linked),
deals across the default pipeline, a product catalogue, an order, logged activities and tasks.

Seeded in the demo's tenant transaction and only while the workspace has no companies, so a
restart never duplicates them and a demo made before companies existed gets them once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tortoise.backends.base.client import BaseDBAsyncClient

# company key -> (industry, size, city, country)
PROFILES: dict[str, tuple[str, str, str, str]] = {
    "yuntu": ("软件", "201-1000", "上海", "CN"), "huaxin": ("咨询", "51-200", "北京", "CN"),
    "shulian": ("软件", "51-200", "深圳", "CN"), "qinghe": ("电子商务", "11-50", "杭州", "CN"),
    "nanyue": ("国际贸易", "201-1000", "广州", "CN"), "rongchuang": ("软件", "11-50", "成都", "CN"),
    "jinggong": ("制造", "1001-5000", "苏州", "CN"), "northwind": ("Wholesale", "201-1000", "Seattle", "US"),
    "contoso": ("Conglomerate", "5000+", "New York", "US"), "fabrikam": ("Manufacturing", "1001-5000", "Berlin", "DE"),
    "adventure": ("Retail", "201-1000", "Birmingham", "GB"), "tailspin": ("Toys", "51-200", "Chicago", "US"),
    "wideworld": ("Import/Export", "201-1000", "Milan", "IT"), "litware": ("Software", "11-50", "Dublin", "IE"),
}
# (deal name, company key, amount, currency, stage position, days to expected close)
DEALS: tuple[tuple[str, str, str, str, int, int], ...] = (
    ("年度硬件采购框架协议", "yuntu", "1280000.00", "CNY", 3, 20),
    ("东南亚渠道合作", "huaxin", "360000.00", "CNY", 1, 45),
    ("数据平台 API 对接", "shulian", "520000.00", "CNY", 2, 30),
    ("直播电商批量报价", "qinghe", "98000.00", "CNY", 0, 60),
    ("RCEP 报关服务", "nanyue", "150000.00", "CNY", 4, -10),
    ("精工设备质保续约", "jinggong", "210000.00", "CNY", 2, 15),
    ("Northwind spring restock", "northwind", "84000.00", "USD", 3, 25),
    ("Contoso pilot, Q2", "contoso", "45000.00", "USD", 1, 75),
    ("Fabrikam Berlin branch", "fabrikam", "120000.00", "EUR", 0, 90),
    ("Adventure Works co-branding", "adventure", "30000.00", "GBP", 5, -20),
    ("Tailspin September peak", "tailspin", "56000.00", "USD", 2, 120),
)
PRODUCTS: tuple[tuple[str, str, str, str], ...] = (
    ("KT-100", "智能网关 KT-100", "1999.00", "CNY"),
    ("KT-200", "工业传感器套件 KT-200", "3499.00", "CNY"),
    ("SVC-Y1", "年度维保服务", "12000.00", "CNY"),
    ("KT-100-US", "Kith Gateway KT-100", "289.00", "USD"),
)


async def seed_crm(tx: BaseDBAsyncClient, owner_id: int | None, companies: dict[str, tuple[str, str]]) -> int:
    """Seed the CRM records inside the demo's tenant transaction; returns the companies added."""
    if (await tx.execute_query_dict("SELECT count(*) AS n FROM companies"))[0]["n"]:
        return 0
    ids: dict[str, int] = {}
    for key, (name, domain) in companies.items():
        industry, size, city, country = PROFILES.get(key, ("", "", "", ""))
        rows = await tx.execute_query_dict(
            "INSERT INTO companies (name, domain, industry, size, city, country, owner_id, created_by_id, tags)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) RETURNING id",
            [name, domain, industry, size, city, country, owner_id, ["demo"]])
        ids[key] = int(rows[0]["id"])
        await tx.execute_query(
            "UPDATE contacts SET company_id = $1, lifecycle_stage = 'customer' WHERE company_name = $2",
            [ids[key], name])
    stages = await tx.execute_query_dict(
        "SELECT s.id, s.position, s.pipeline_id FROM stages s JOIN pipelines p ON p.id = s.pipeline_id"
        " WHERE p.is_default ORDER BY s.position")
    today = datetime.now(UTC).date()
    for name, key, amount, currency, position, days in DEALS:
        stage = stages[min(position, len(stages) - 1)]
        contact = await tx.execute_query_dict(
            "SELECT id FROM contacts WHERE company_id = $1 ORDER BY id LIMIT 1", [ids[key]])
        deal = await tx.execute_query_dict(
            "INSERT INTO deals (name, amount, currency, expected_close, pipeline_id, stage_id, company_id,"
            " contact_id, owner_id, created_by_id, closed_at, loss_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
            " $9, $9, CASE WHEN $10 THEN now() END, CASE WHEN $11 THEN 'Budget moved to next year' ELSE '' END)"
            " RETURNING id",
            [name, Decimal(amount), currency, today + timedelta(days=days), stage["pipeline_id"], stage["id"],
             ids[key], contact[0]["id"] if contact else None, owner_id, position >= 4, position == 5])
        await tx.execute_query(
            "INSERT INTO activities (kind, subject, body, occurred_at, company_id, contact_id, deal_id,"
            " created_by_id) VALUES ('call', $1, $2, now() - interval '2 days', $3, $4, $5, $6)",
            [f"电话沟通：{name}" if currency == "CNY" else f"Call about {name}", "", ids[key],
             contact[0]["id"] if contact else None, deal[0]["id"], owner_id])
    for sku, name, price, currency in PRODUCTS:
        await tx.execute_query(
            "INSERT INTO products (sku, name, unit_price, currency) VALUES ($1, $2, $3, $4)",
            [sku, name, Decimal(price), currency])
    order = await tx.execute_query_dict(
        "INSERT INTO orders (number, company_id, owner_id, status, currency, order_date, subtotal, discount_total,"
        " total, created_by_id) VALUES ('SO-000001', $1, $2, 'confirmed', 'CNY', $3, 19990.00, 999.50, 18990.50, $2)"
        " RETURNING id", [ids["yuntu"], owner_id, today - timedelta(days=7)])
    await tx.execute_query(
        "INSERT INTO order_lines (order_id, position, product_id, description, quantity, unit_price,"
        " discount_percent, line_total) SELECT $1, 0, id, name, 10, unit_price, 5, 18990.50 FROM products"
        " WHERE sku = 'KT-100'", [order[0]["id"]])
    await tx.execute_query(
        "INSERT INTO tasks (title, due_at, assignee_id, company_id, created_by_id) VALUES"
        " ('发送年度框架协议草案', now() + interval '1 day', $1, $2, $1),"
        " ('Follow up on the Contoso pilot', now() + interval '3 days', $1, $3, $1)",
        [owner_id, ids["yuntu"], ids["contoso"]])
    await tx.execute_query(
        "INSERT INTO custom_fields (object_type, key, label, kind, options) VALUES"
        " ('companies', 'tier', '客户等级', 'select', $1::jsonb)", [json.dumps(["A", "B", "C"])])
    await tx.execute_query("UPDATE companies SET custom = '{\"tier\": \"A\"}' WHERE id = $1", [ids["yuntu"]])
    # service: an urgent ticket answered and waiting for the customer, a new one nobody has taken yet
    contact = await tx.execute_query_dict(
        "SELECT id FROM contacts WHERE company_id = $1 ORDER BY id LIMIT 1", [ids["yuntu"]])
    ticket = await tx.execute_query_dict(
        "INSERT INTO tickets (subject, description, status, priority, channel, company_id, contact_id, owner_id,"
        " first_response_due_at, resolution_due_at, first_responded_at, created_by_id, created_at)"
        " VALUES ('网关 KT-100 固件升级后无法联网', '升级到 2.3 版后设备离线，指示灯常亮红色。', 'pending', 'urgent',"
        " 'phone', $1, $2, $3, now() - interval '5 hours', now() - interval '2 hours',"
        " now() - interval '5 hours 30 minutes', $3, now() - interval '6 hours') RETURNING id",
        [ids["yuntu"], contact[0]["id"] if contact else None, owner_id])
    await tx.execute_query(
        "INSERT INTO ticket_messages (ticket_id, kind, body, author_id, created_at) VALUES"
        " ($1, 'note', '已复现：2.3 版 DHCP 续租失败。', $2, now() - interval '5 hours 40 minutes'),"
        " ($1, 'reply', '您好，请先回退到 2.2 版，修复版本将于本周发布。', $2, now() - interval '5 hours 30 minutes')",
        [ticket[0]["id"], owner_id])
    await tx.execute_query(
        "INSERT INTO tickets (subject, priority, channel, company_id, first_response_due_at, resolution_due_at,"
        " created_by_id) VALUES ('Invoice address needs updating', 'normal', 'email', $1, now() + interval '8 hours',"
        " now() + interval '72 hours', $2)", [ids["contoso"], owner_id])
    # a few unowned companies wait in the public pool
    for name in ("厦门海晟物流有限公司", "Blue Yonder Airlines"):
        await tx.execute_query(
            "INSERT INTO companies (name, pooled_at, created_by_id) VALUES ($1, now(), $2)", [name, owner_id])
    return len(ids) + 2
