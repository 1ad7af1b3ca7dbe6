"""The demo workspace `kith dev` seeds: a trading company with English and Chinese contacts.

Email addresses use the reserved `.example` top-level domain and phone numbers the ranges
set aside for fiction (+1 555-01xx, +44 20 7946 0xxx) where one exists, so nothing Kith
ever sends from the demo can reach a real person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from kith.platform.db import platform_tx, tenant_scope
from kith.platform.identity.models import Identity, Membership
from kith.platform.identity.passwords import check_password_rules, hash_password
from kith.platform.tenancy.models import Tenant
from kith.platform.tenancy.provisioning import provision_tenant_in
from kith.platform.tenancy.slugs import SlugError
from kith.tenants.contacts.models import Contact
from kith.tenants.demo_crm import seed_crm

DEMO_SLUG = "demo"
DEMO_COMPANY = "Demo Trading Co. 示例贸易"
DEMO_EMAIL = "demo@kith.localhost"
DEMO_PASSWORD = "kith-demo-2026"  # noqa: S105 - printed by `kith dev` on purpose
DEMO_OWNER_NAME = "Demo Owner"

# Any constant works: it only serialises two seeders racing on one database.
_SEED_LOCK_KEY = 0x6B64656D  # 'kdem'

# key -> (company name, email domain)
COMPANIES: dict[str, tuple[str, str]] = {
    "yuntu": ("上海云图科技有限公司", "yuntu-tech.example"),
    "huaxin": ("北京华信咨询", "huaxin-consulting.example"),
    "shulian": ("深圳前海数联科技有限公司", "shulian.example"),
    "qinghe": ("杭州青禾电子商务有限公司", "qinghe-ec.example"),
    "nanyue": ("广州南粤国际贸易有限公司", "nanyue-trade.example"),
    "rongchuang": ("成都蓉创软件有限公司", "rongchuang.example"),
    "jinggong": ("苏州精工机械制造有限公司", "jinggong.example"),
    "northwind": ("Northwind Traders", "northwind.example"),
    "contoso": ("Contoso Ltd", "contoso.example"),
    "fabrikam": ("Fabrikam, Inc.", "fabrikam.example"),
    "adventure": ("Adventure Works Cycles", "adventure-works.example"),
    "tailspin": ("Tailspin Toys", "tailspin.example"),
    "wideworld": ("Wide World Importers", "wideworld.example"),
    "litware": ("Litware, Inc.", "litware.example"),
}

# (name, email user, phone, company key, notes)
DEMO_CONTACTS: tuple[tuple[str, str, str, str, str], ...] = (
    ("张伟", "zhang.wei", "+86 138 0013 8001", "yuntu", "采购总监，负责年度硬件招标。偏好微信沟通。"),
    ("王芳", "wang.fang", "+86 139 1024 5567", "huaxin", "合伙人。2025年广交会上认识，对东南亚渠道感兴趣。"),
    ("李娜", "li.na", "+86 137 2233 4410", "qinghe", "运营经理，每季度补货一次。"),
    ("刘洋", "liu.yang", "+86 186 0571 3321", "qinghe", "IT 负责人，询问过 API 对接。"),
    ("陈静", "chen.jing", "+86 135 0210 7788", "yuntu", "财务，发票寄送请抄送她。"),
    ("杨磊", "yang.lei", "+86 158 2001 9090", "shulian", "CTO. Prefers email in English."),
    ("赵敏", "zhao.min", "+86 136 6688 1203", "nanyue", "报关专员，熟悉 RCEP 原产地规则。"),
    ("黄晓明", "huang.xiaoming", "+86 139 2876 4512", "nanyue", "总经理，下月来上海参观工厂。"),
    ("周杰", "zhou.jie", "+86 133 8080 6621", "rongchuang", "产品经理，试用了我们的样品。"),
    ("吴婷", "wu.ting", "+86 150 2811 0934", "rongchuang", ""),
    ("徐强", "xu.qiang", "+86 189 1234 5601", "jinggong", "设备采购，关注交期和质保。"),
    ("孙丽", "sun.li", "+86 131 6201 4488", "jinggong", "质量部，要求提供 ISO 9001 证书。"),
    ("马超", "ma.chao", "+86 177 0101 2020", "huaxin", "Senior consultant; introduced us to Contoso."),
    ("朱琳", "zhu.lin", "+86 138 1766 3405", "yuntu", "市场部，合作举办过线下沙龙。"),
    ("胡斌", "hu.bin", "+86 187 2710 5566", "shulian", "销售副总裁，Q3 续约。"),
    ("郭静怡", "guo.jingyi", "+86 135 8899 0012", "qinghe", "直播电商负责人，需要批量报价。"),
    ("何涛", "he.tao", "+86 152 0755 8123", "shulian", "工程师，反馈过固件问题，已解决。"),
    ("高雪", "gao.xue", "+86 136 0010 2299", "huaxin", "行政，安排会议室和差旅。"),
    ("林峰", "lin.feng", "+86 139 5920 1177", "nanyue", "仓储主管，广州南沙仓。"),
    ("罗佳", "luo.jia", "+86 180 2800 6543", "rongchuang", "HR, asked about a training partnership."),
    ("郑浩", "zheng.hao", "+86 137 0512 3388", "jinggong", "厂长。春节前确认下一批订单。"),
    ("梁雨桐", "liang.yutong", "+86 188 2000 7714", "yuntu", "法务，合同模板已发她审阅。"),
    ("谢欣", "xie.xin", "+86 159 2100 4456", "qinghe", ""),
    ("宋健", "song.jian", "+86 138 6001 2345", "huaxin", "Met at the Shanghai trade expo, 2025."),
    ("唐悦", "tang.yue", "+86 135 1234 8765", "shulian", "招聘合作，正在扩充海外团队。"),
    ("韩梅梅", "han.meimei", "+86 139 0101 6677", "nanyue", "英语很好，负责对接欧洲客户。"),
    ("冯磊", "feng.lei", "+86 186 2888 3210", "rongchuang", "CEO，对年度框架协议有兴趣。"),
    ("董思远", "dong.siyuan", "+86 132 1088 9900", "yuntu", "新任采购专员，接替张伟的部分工作。"),
    ("萧文", "xiao.wen", "+86 150 1234 0987", "jinggong", "海外销售，常驻新加坡。"),
    ("程晨", "cheng.chen", "+86 181 0215 6060", "huaxin", "数据分析师，要了我们的产品目录。"),
    ("Emily Carter", "emily.carter", "+1 415 555 0132", "northwind", "Head of purchasing; review in March."),
    ("James O'Brien", "james.obrien", "+1 415 555 0147", "northwind", "Logistics; ships via Oakland."),
    ("Olivia Martinez", "olivia.martinez", "+1 212 555 0188", "contoso", "VP Operations; pilot in Q2."),
    ("Liam Johnson", "liam.johnson", "+1 212 555 0119", "contoso", ""),
    ("Sophia Nguyen", "sophia.nguyen", "+1 408 555 0163", "fabrikam", "Engineering lead, has samples."),
    ("Noah Williams", "noah.williams", "+1 408 555 0171", "fabrikam", "Procurement. Needs net-60 terms."),
    ("Ava Thompson", "ava.thompson", "+44 20 7946 0321", "adventure", "UK distributor contact."),
    ("Ethan Brown", "ethan.brown", "+44 20 7946 0458", "adventure", "Warehouse manager, Birmingham."),
    ("Isabella Rossi", "isabella.rossi", "+39 02 5555 0142", "wideworld", "Milan; speaks some Mandarin."),
    ("Mason Clark", "mason.clark", "+1 206 555 0104", "tailspin", "Seasonal orders peak in September."),
    ("Mia Patel", "mia.patel", "+44 20 7946 0876", "litware", "Finance; send invoices as PDF."),
    ("Lucas Schneider", "lucas.schneider", "+49 30 5555 0190", "fabrikam", "Berlin branch. Met at CeBIT."),
    ("Charlotte Dubois", "charlotte.dubois", "+33 1 55 55 01 23", "wideworld", "Paris buyers."),
    ("Benjamin Lee", "benjamin.lee", "+1 415 555 0155", "northwind", "Sales ops, CRM power user."),
    ("Amelia Walker", "amelia.walker", "+61 2 5550 1234", "tailspin", "Sydney; samples before Xmas."),
    ("Henry Adams", "henry.adams", "+1 617 555 0126", "contoso", "Legal. Reviewing the NDA."),
    ("Harper Kim", "harper.kim", "+82 2 555 0148", "litware", "Seoul office. 喜欢用微信沟通。"),
    ("Alexander Novak", "alexander.novak", "+420 2 5555 0167", "wideworld", ""),
    ("Evelyn Hughes", "evelyn.hughes", "+44 20 7946 0599", "adventure", "Marketing; co-branding idea."),
    ("Daniel Murphy", "daniel.murphy", "+353 1 555 0177", "litware", "Dublin. Renewal due in June."),
    ("Grace Chen 陈嘉怡", "grace.chen", "+1 415 555 0189", "northwind", "Bilingual account manager."),
    ("Samuel Okafor", "samuel.okafor", "+234 1 555 0102", "contoso", "Lagos partner office."),
    ("Chloe Fischer", "chloe.fischer", "+41 44 555 0136", "fabrikam", "Zurich; compliance questions."),
    ("Jack Wilson", "jack.wilson", "+1 312 555 0144", "tailspin", "CEO. Prefers phone calls."),
    ("Zoe Anderson", "zoe.anderson", "+1 503 555 0158", "adventure", "Product design; wants CAD files."),
    ("Ryan Kowalski", "ryan.kowalski", "+48 22 555 0112", "wideworld", "Warsaw hub, customs paperwork."),
    ("Lily Evans", "lily.evans", "+44 20 7946 0233", "litware", ""),
    ("Owen Price", "owen.price", "+1 646 555 0175", "contoso", "Board member; met at a dinner in Shanghai."),
    ("Hannah Schmidt", "hannah.schmidt", "+49 89 5555 0128", "fabrikam", "Munich; German invoices."),
    ("David Levi", "david.levi", "+972 3 555 0161", "northwind", "Tel Aviv; interested in the API."),
)


@dataclass(frozen=True)
class DemoWorkspace:
    tenant_id: int
    slug: str
    created: bool  # the workspace and its owner were created by this call
    contacts_added: int
    contacts_total: int


def demo_contacts(created_by_id: int | None) -> list[Contact]:
    return [
        Contact(name=name, email=f"{user}@{COMPANIES[key][1]}", phone=phone, company_name=COMPANIES[key][0],
                notes=notes, created_by_id=created_by_id, owner_id=created_by_id)
        for name, user, phone, key, notes in DEMO_CONTACTS
    ]


async def _create_workspace(password: str) -> tuple[Tenant, bool]:
    """The demo tenant and its owner in one transaction; (tenant, created)."""
    # Not sign_up(): it rightly refuses `.localhost` addresses, which can never receive
    # mail; for the demo owner that is the point. The password rules still apply.
    check_password_rules(password, email=DEMO_EMAIL)
    try:
        async with platform_tx() as tx:
            tenant = await provision_tenant_in(tx, slug=DEMO_SLUG, name=DEMO_COMPANY)
            owner = await Identity.filter(email__iexact=DEMO_EMAIL).using_db(tx).first()
            if owner is None:
                # verified from the start: the address receives no mail, and the demo should show
                # every screen of a workspace, paid checkout included, without the banner
                owner = await Identity.create(email=DEMO_EMAIL, display_name=DEMO_OWNER_NAME,
                                              password_hash=hash_password(password),
                                              email_verified_at=datetime.now(UTC), using_db=tx)
            await Membership.create(tenant=tenant, identity=owner, role="owner", using_db=tx)
    except SlugError:
        # another seeder created it a moment ago (its transaction rolled ours back cleanly)
        return await Tenant.get(slug=DEMO_SLUG), False
    return tenant, True


async def seed_demo(*, password: str = DEMO_PASSWORD) -> DemoWorkspace:
    """Create the demo workspace, its owner, sample contacts and CRM records; safe to run on every start.

    The workspace and its owner are created in one transaction; contacts are added in one
    tenant transaction, and only while the workspace has none: a restart never duplicates
    them, and a run interrupted between the two steps completes on the next start.
    """
    tenant = await Tenant.filter(slug=DEMO_SLUG).first()
    created = False
    if tenant is None:
        tenant, created = await _create_workspace(password)
    owner = await Identity.filter(email__iexact=DEMO_EMAIL).first()
    async with tenant_scope(tenant.id) as tx:
        await tx.execute_query("SELECT pg_advisory_xact_lock($1)", [_SEED_LOCK_KEY])
        existing = await Contact.all().using_db(tx).count()
        added = 0
        if existing == 0:
            contacts = demo_contacts(owner.id if owner else None)
            await Contact.bulk_create(contacts, using_db=tx)
            added = len(contacts)
        await seed_crm(tx, owner.id if owner else None, COMPANIES)
    return DemoWorkspace(tenant_id=tenant.id, slug=tenant.slug, created=created,
                         contacts_added=added, contacts_total=existing + added)
