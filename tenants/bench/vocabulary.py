"""Words the benchmark's data is made of: Chinese and Western names, companies, cities, titles.

Email addresses use the reserved `.example` top-level domain and phone numbers the ranges set
aside for fiction where one exists (+1 555-01xx, +44 20 7946 0xxx), as in tenants/demo.py, so
nothing Kith sends from a benchmark workspace can reach a real person.
"""

from __future__ import annotations

# (surname, pinyin), the commonest first: a handful of surnames cover most people, as in life
CN_SURNAMES: tuple[tuple[str, str], ...] = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"), ("杨", "yang"),
    ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"), ("徐", "xu"), ("孙", "sun"),
    ("马", "ma"), ("朱", "zhu"), ("胡", "hu"), ("郭", "guo"), ("何", "he"), ("高", "gao"),
    ("林", "lin"), ("罗", "luo"), ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"),
    ("唐", "tang"), ("韩", "han"), ("冯", "feng"), ("董", "dong"), ("萧", "xiao"), ("程", "cheng"),
)
CN_GIVEN: tuple[tuple[str, str], ...] = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("秀英", "xiuying"), ("敏", "min"), ("静", "jing"),
    ("丽", "li"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"),
    ("艳", "yan"), ("杰", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("超", "chao"),
    ("秀兰", "xiulan"), ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("桂英", "guiying"), ("晓明", "xiaoming"),
    ("雨桐", "yutong"), ("思远", "siyuan"), ("嘉怡", "jiayi"), ("子涵", "zihan"), ("浩然", "haoran"),
    ("欣怡", "xinyi"), ("梓萱", "zixuan"), ("俊杰", "junjie"), ("婷", "ting"), ("斌", "bin"), ("雪", "xue"),
    ("峰", "feng"), ("佳", "jia"), ("浩", "hao"), ("欣", "xin"), ("健", "jian"), ("悦", "yue"), ("文", "wen"),
)
# (city, pinyin, landline area code); companies and addresses in these cities
CN_CITIES: tuple[tuple[str, str, str], ...] = (
    ("北京", "beijing", "10"), ("上海", "shanghai", "21"), ("深圳", "shenzhen", "755"),
    ("广州", "guangzhou", "20"), ("杭州", "hangzhou", "571"), ("成都", "chengdu", "28"),
    ("南京", "nanjing", "25"), ("武汉", "wuhan", "27"), ("西安", "xian", "29"), ("苏州", "suzhou", "512"),
    ("天津", "tianjin", "22"), ("重庆", "chongqing", "23"), ("厦门", "xiamen", "592"), ("青岛", "qingdao", "532"),
)
CN_DISTRICTS: tuple[str, ...] = ("朝阳区", "海淀区", "浦东新区", "南山区", "天河区", "西湖区", "高新区", "经开区",
                                 "工业园区", "滨江区", "鼓楼区", "江北区")
CN_ROADS: tuple[str, ...] = ("建国路", "人民路", "中山路", "解放路", "科技路", "创业大道", "长江路", "世纪大道",
                             "和平路", "华山路")
# brand words of company names: (word, pinyin)
CN_BRANDS: tuple[tuple[str, str], ...] = (
    ("星辰", "xingchen"), ("华信", "huaxin"), ("云图", "yuntu"), ("数联", "shulian"), ("青禾", "qinghe"),
    ("南粤", "nanyue"), ("蓉创", "rongchuang"), ("精工", "jinggong"), ("天宇", "tianyu"), ("瑞丰", "ruifeng"),
    ("恒通", "hengtong"), ("博远", "boyuan"), ("中科", "zhongke"), ("金桥", "jinqiao"), ("汇智", "huizhi"),
    ("鼎盛", "dingsheng"), ("新航", "xinhang"), ("永安", "yongan"), ("凯达", "kaida"), ("远景", "yuanjing"),
    ("明德", "mingde"), ("启航", "qihang"), ("东方", "dongfang"), ("长城", "changcheng"), ("宏图", "hongtu"),
)
# (industry word in the name, pinyin for the domain, industry as stored)
CN_INDUSTRIES: tuple[tuple[str, str, str], ...] = (
    ("科技", "tech", "科技"), ("咨询", "consulting", "咨询服务"), ("贸易", "trade", "国际贸易"),
    ("电子商务", "ec", "电子商务"), ("软件", "soft", "软件"), ("机械制造", "machinery", "制造业"),
    ("物流", "logistics", "物流"), ("医疗器械", "medical", "医疗"), ("新能源", "energy", "新能源"),
    ("食品", "foods", "食品饮料"), ("教育科技", "edu", "教育"), ("文化传媒", "media", "传媒"),
)
CN_SUFFIXES: tuple[str, ...] = ("有限公司", "有限公司", "有限公司", "股份有限公司", "集团有限公司")
CN_TITLES: tuple[str, ...] = ("采购总监", "销售经理", "总经理", "财务经理", "工程师", "市场总监", "运营经理",
                              "技术总监", "产品经理", "行政主管", "副总裁", "法务", "采购专员", "董事长")
CN_MOBILE_PREFIXES: tuple[str, ...] = ("138", "139", "137", "136", "135", "158", "159", "186", "188", "189",
                                       "150", "152", "177", "181", "133", "131")
CN_FREE_MAIL: tuple[str, ...] = ("qq.example", "163.example", "126.example", "sina.example")

WEST_FIRST: tuple[str, ...] = (
    "Emily", "James", "Olivia", "Liam", "Sophia", "Noah", "Ava", "Ethan", "Isabella", "Mason", "Mia", "Lucas",
    "Charlotte", "Benjamin", "Amelia", "Henry", "Harper", "Alexander", "Evelyn", "Daniel", "Grace", "Samuel",
    "Chloe", "Jack", "Zoe", "Ryan", "Lily", "Owen", "Hannah", "David", "Sarah", "Michael", "Emma", "William",
    "Laura", "Thomas", "Anna", "Paul", "Julia", "Mark", "Nina", "Oscar", "Clara", "Felix", "Maria", "Jonas",
)
WEST_LAST: tuple[str, ...] = (
    "Carter", "O'Brien", "Martinez", "Johnson", "Nguyen", "Williams", "Thompson", "Brown", "Rossi", "Clark",
    "Patel", "Schneider", "Dubois", "Lee", "Walker", "Adams", "Kim", "Novak", "Hughes", "Murphy", "Okafor",
    "Fischer", "Wilson", "Anderson", "Kowalski", "Evans", "Price", "Schmidt", "Levi", "Smith", "Garcia",
    "Miller", "Davis", "Lopez", "Gonzalez", "Moore", "Taylor", "Moreau", "Müller", "Jensen", "Silva", "Tanaka",
)
WEST_BRANDS: tuple[str, ...] = (
    "Northwind", "Contoso", "Fabrikam", "Litware", "Tailspin", "Wide World", "Adventure", "Blue Yonder",
    "Summit", "Riverbend", "Ironwood", "Bluebird", "Silverline", "Redstone", "Oakridge", "Brightpath",
    "Clearwater", "Evergreen", "Granite", "Harbor", "Keystone", "Lakeside", "Maple", "Pioneer", "Quantum",
)
# (word in the name, industry as stored)
WEST_INDUSTRIES: tuple[tuple[str, str], ...] = (
    ("Analytics", "Software"), ("Logistics", "Logistics"), ("Software", "Software"), ("Consulting", "Consulting"),
    ("Manufacturing", "Manufacturing"), ("Health", "Healthcare"), ("Energy", "Energy"), ("Foods", "Food & Beverage"),
    ("Media", "Media"), ("Retail", "Retail"), ("Traders", "Wholesale"), ("Systems", "IT Services"),
)
WEST_SUFFIXES: tuple[str, ...] = ("Inc.", "Ltd", "LLC", "Corp.", "Co.", "GmbH", "Group")
WEST_TITLES: tuple[str, ...] = ("Head of Purchasing", "VP Operations", "CEO", "CTO", "Sales Manager",
                                "Account Executive", "Procurement Lead", "Finance Director", "Engineering Lead",
                                "Marketing Manager", "Office Manager", "Legal Counsel", "Product Manager")
WEST_STREETS: tuple[str, ...] = ("Market Street", "Main Street", "High Street", "King Street", "Broadway",
                                 "Oak Avenue", "Harbour Road", "Station Road", "Park Lane", "Mission Street")
WEST_FREE_MAIL: tuple[str, ...] = ("gmail.example", "outlook.example", "yahoo.example", "proton.example")
# (city, country, currency, phone format): "{d}" is filled with random digits, so every number
# stays inside its country's fiction range where one exists
WEST_CITIES: tuple[tuple[str, str, str, str], ...] = (
    ("San Francisco", "US", "USD", "+1 415-555-01{d2}"),
    ("New York", "US", "USD", "+1 212-555-01{d2}"),
    ("Seattle", "US", "USD", "+1 206-555-01{d2}"),
    ("Chicago", "US", "USD", "+1 312-555-01{d2}"),
    ("Toronto", "CA", "CAD", "+1 416-555-01{d2}"),
    ("London", "GB", "GBP", "+44 20 7946 0{d3}"),
    ("Berlin", "DE", "EUR", "+49 30 5555 0{d3}"),
    ("Munich", "DE", "EUR", "+49 89 5555 0{d3}"),
    ("Paris", "FR", "EUR", "+33 1 55 55 0{d1} {d2}"),
    ("Sydney", "AU", "AUD", "+61 2 5550 {d4}"),
    ("Singapore", "SG", "SGD", "+65 6555 {d4}"),
    ("Tokyo", "JP", "JPY", "+81 3 5555 {d4}"),
)
COMPANY_SIZES: tuple[str, ...] = ("1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+", "")
COMPANY_SIZE_WEIGHTS: tuple[int, ...] = (20, 30, 22, 14, 6, 3, 5)

LIFECYCLE_STAGES: tuple[str, ...] = ("subscriber", "lead", "qualified", "opportunity", "customer", "evangelist",
                                     "other")
LIFECYCLE_WEIGHTS: tuple[int, ...] = (10, 30, 15, 15, 22, 3, 5)
SOURCES: tuple[str, ...] = ("website", "referral", "trade show", "展会", "官网", "微信", "cold call", "LinkedIn",
                            "import", "partner", "")
TAGS: tuple[str, ...] = ("vip", "partner", "重点客户", "trade-show", "2025展会", "reseller", "渠道", "enterprise",
                         "smb", "newsletter", "续约", "at-risk")
CONSENT: tuple[str, ...] = ("unknown", "granted", "withdrawn")
CONSENT_WEIGHTS: tuple[int, ...] = (65, 30, 5)

CN_NOTES: tuple[str, ...] = ("偏好微信沟通。", "负责年度硬件招标。", "每季度补货一次。", "询问过 API 对接。",
                             "发票寄送请抄送财务。", "下月来上海参观工厂。", "关注交期和质保。",
                             "春节前确认下一批订单。")
WEST_NOTES: tuple[str, ...] = ("Prefers email.", "Met at the trade expo.", "Renewal due in June.",
                               "Needs net-60 terms.", "Interested in the API.", "Send invoices as PDF.",
                               "Pilot planned for Q2.", "Asked for a volume quote.")

# deal names: what is being sold
CN_DEAL_WORDS: tuple[str, ...] = ("年度采购", "软件许可", "设备升级", "框架协议", "续约", "试点项目", "系统集成",
                                  "运维服务", "批量订单")
WEST_DEAL_WORDS: tuple[str, ...] = ("Renewal", "Annual licence", "Pilot", "Expansion", "Hardware refresh",
                                    "Framework agreement", "Support plan", "Bulk order", "Integration")
LOSS_REASONS: tuple[str, ...] = ("Price", "Chose a competitor", "No budget", "价格太高", "选择了竞争对手", "Timing")
# the default pipeline's stage names (tenant migration 0007) -> weight of deals in each
STAGE_WEIGHTS: dict[str, int] = {"Qualification": 25, "Needs analysis": 20, "Proposal": 15, "Negotiation": 10,
                                 "Won": 18, "Lost": 12}

ACTIVITY_KINDS: tuple[str, ...] = ("call", "meeting", "email", "note")
CN_ACTIVITY_SUBJECTS: tuple[str, ...] = ("电话沟通需求", "上门拜访", "发送报价单", "跟进合同", "产品演示",
                                         "确认交期", "微信沟通")
WEST_ACTIVITY_SUBJECTS: tuple[str, ...] = ("Intro call", "On-site visit", "Sent the quote", "Contract follow-up",
                                           "Product demo", "Confirmed delivery dates", "Check-in")
CN_TASK_TITLES: tuple[str, ...] = ("发送报价", "安排演示", "跟进付款", "准备合同", "回访客户")
WEST_TASK_TITLES: tuple[str, ...] = ("Send the quote", "Schedule a demo", "Chase the payment", "Draft the contract",
                                     "Follow up")

# the benchmark's sales team: display names of the members who own the records
MEMBER_NAMES: tuple[str, ...] = (
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄晓明", "Emily Carter", "James O'Brien",
    "Olivia Martinez", "Liam Johnson", "Sophia Nguyen", "Noah Williams", "Ava Thompson", "周杰", "吴婷", "徐强",
    "Lucas Schneider", "Mia Patel",
)
