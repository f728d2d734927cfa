"""A realistic multi-channel demo data set (``manage.py seed_demo``).

Six sources hold the same people the way real systems do: each keys them differently
(``W004517``, a numeric shop user id, a POS member card, the caller's mobile, ``CUST-004512``),
names its columns in its own language, and formats values its own way (``138 0013 8000``,
``+86-138-0013-8000``, ``張偉 ``, ``1990/6/15``, ``06-15``). About a third of the people appear
in two or more sources. Hard negatives are planted on purpose: namesakes in one city, a
household sharing a landline (and a parent using a child's mobile), twins.

Generation is a pure function of ``(customers, seed)`` (:func:`generate`); only timestamps
follow the clock. :func:`demo_seed` writes it with ``bulk_create``: one golden record per source
record, since matching is the dedup engine's job, not the seed's.
"""

from __future__ import annotations

import random
import string
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction
from django.utils import timezone
from pypinyin import lazy_pinyin
from rest_framework.authtoken.models import Token
from stdnum.cn import ric

from accounts.crypto import blind_index, content_hash, seal_values, secret_field_names
from accounts.models import UserProfile
from accounts.roles import Role, roles_sync
from crmhub.choices import ChangeChannel, ChangeEventType
from crmhub.context import change_context
from crmhub.models import Customer, Interaction, Source, SourceRecord
from crmhub.outbox import Change, changes_record_bulk, feed_values
from crmhub.services import customer_values_from_normalized
from imports.cleaning import clean_email, clean_id_number, clean_mobile

# Birth dates and ages are anchored to a fixed day so that a seed always yields the same people.
ANCHOR = date(2025, 1, 1)
HISTORY_DAYS = 548  # 18 months of first/last-seen and interaction timestamps
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

# code, name, kind, trust rank, description
SOURCES: list[tuple[str, str, str, int, str]] = [
    ("web", "官网注册", "push", 30, "Website sign-ups pushed by the site's backend (self-declared, least trusted)."),
    ("eshop", "网上商城", "rest", 60, "Online store users pulled from its REST API (mini program, app, H5)."),
    ("pos_sh", "上海南京路门店 POS", "sql", 70, "Member table of the Shanghai Nanjing Road store's POS."),
    ("pos_bj", "北京三里屯门店 POS", "sql", 65, "Member table of the Beijing Sanlitun store's (older) POS."),
    ("callcenter", "呼叫中心", "sql", 40, "Call-center CRM, keyed by the caller's number."),
    ("erp", "ERP 系统", "sql", 90, "ERP customer master (invoicing, contracts): the most trusted source."),
]
SOURCE_CODES = [s[0] for s in SOURCES]
# The raw column holding the mobile in each source (tests and docs use it).
MOBILE_COLUMN = {
    "web": "mobile",
    "eshop": "phone",
    "pos_sh": "手机号码",
    "pos_bj": "手机",
    "callcenter": "来电号码",
    "erp": "Mobile",
}
# The raw column holding the ID number: sealed like the normalized value (secret fields are encrypted at rest).
ID_COLUMN = {"eshop": "idCardNo", "pos_sh": "身份证号", "pos_bj": "证件号码", "callcenter": "证件号码", "erp": "IDNo"}
STORES = {"pos_sh": ("上海南京路店", "SH", "east"), "pos_bj": ("北京三里屯店", "BJ", "north")}

DEMO_USERS: list[tuple[str, str, str]] = [
    # username, group (accounts.roles.Role value), display name
    ("admin", "admin", "Demo Admin"),
    ("steward", "steward", "Demo Steward"),
    ("sales", "sales", "Demo Sales"),
    ("support", "support", "Demo Support"),
    ("auditor", "auditor", "Demo Auditor"),
    ("api", "api_client", "Demo API client"),
]
SALES_TEAM = "east"  # the sales demo user sees the Shanghai store's and east-region customers

# ---------------------------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------------------------

# Surnames in frequency tiers (weight per surname): the top three cover about a fifth of people.
_SURNAME_TIERS = [
    (70, "王李张"),
    (50, "刘陈"),
    (30, "杨"),
    (20, "黄赵吴周"),
    (12, "徐孙马朱胡郭何林高罗"),
    (7, "郑梁谢宋唐许韩邓冯曹彭曾肖"),
    (3, "田董潘袁蔡蒋余于杜叶程魏苏吕丁任沈姚卢钟姜崔谭陆范汪廖石金贾夏付方邹熊白"),
    (3, "孟秦邱侯江尹薛闫段雷龙黎史陶贺毛郝顾龚邵万钱戴严"),
]
COMPOUND_SURNAMES = ["欧阳", "司马", "上官", "诸葛"]
SURNAMES = [c for _, chars in _SURNAME_TIERS for c in chars] + COMPOUND_SURNAMES
SURNAME_WEIGHTS = [w for w, chars in _SURNAME_TIERS for _ in chars] + [1] * len(COMPOUND_SURNAMES)

# Given names: single characters (which make the classic namesakes 张伟, 王芳) and two-character
# names built from era-typical first and second characters.
GIVEN_SINGLE = {
    "M": "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帅旭宁龙林阳洋亮成",
    "F": "芳娜敏静丽艳娟霞秀玲燕婷雪慧莹晶琳颖倩洁丹萍红梅蕾薇璐瑶欣",
}
GIVEN_OLD = {"M": ("国建志文永海春德明", "华军平民生强伟林荣东"), "F": ("秀桂玉淑丽春凤美海", "英兰珍芳华梅霞琴红")}
GIVEN_NEW = {
    "M": ("子浩宇俊志晓家嘉天思博一泽梓", "轩然杰宇涛明辉成博航睿阳远峰磊"),
    "F": ("晓雨欣子思梓佳梦诗雅婉静紫一", "涵怡琪萱彤婷雪妍蕾琳悦颖娜洁慧菲"),
}
COMMON_NAMES = [
    ("张", "伟", "M"),
    ("王", "芳", "F"),
    ("李", "娜", "F"),
    ("刘", "洋", "M"),
    ("王", "伟", "M"),
    ("李", "静", "F"),
]

# Simplified -> traditional for the characters used above (old POS terminals and HK/TW customers).
_TRAD = (
    "张張刘劉陈陳杨楊黄黃赵趙吴吳孙孫马馬罗羅郑鄭谢謝许許韩韓邓鄧冯馮叶葉苏蘇吕呂卢盧钟鍾谭譚陆陸贾賈"
    "邹鄒龙龍贺賀顾顧龚龔万萬钱錢严嚴伟偉强強军軍杰傑涛濤辉輝鹏鵬华華飞飛凯凱帅帥宁寧阳陽丽麗艳艷莹瑩"
    "颖穎洁潔红紅瑶瑤晓曉国國泽澤轩軒远遠梦夢诗詩静靜兰蘭凤鳳东東荣榮刚剛悦悅龟龜门門"
)
TRADITIONAL = dict(zip(_TRAD[::2], _TRAD[1::2], strict=True))
# Homophones an input method offers first: the typos real data entry makes.
_TYPO = (
    "伟玮芳方丽莉娜那静婧敏珉军君杰捷涛滔明铭华骅红虹玲琳磊垒强锵辉晖鹏朋飞菲宇雨浩皓婷亭慧惠颖莹洁杰琳林"
    "欣馨怡宜涵含轩萱晓小佳嘉梦孟思丝俊骏建健国果文雯家佳嘉佳博波睿锐远原峰锋阳杨洋扬亮靓"
)
TYPOS = dict(zip(_TYPO[::2], _TYPO[1::2], strict=True))
SURNAME_TYPOS = dict(zip("张王李刘陈杨吴徐肖", "章汪黎柳程阳胡许萧", strict=True))

WESTERN_NAMES: dict[str, tuple[str, str, str]] = {
    # country: male first names, female first names, family names
    "US": (
        "James John Robert Michael David William Daniel Matthew Andrew Christopher",
        "Mary Jennifer Linda Elizabeth Sarah Emily Jessica Laura Ashley Megan",
        "Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Moore Clark",
    ),
    "GB": (
        "Oliver George Harry Jack Thomas Charles Edward Peter",
        "Olivia Emma Charlotte Sophie Emily Hannah Claire",
        "Smith Jones Taylor Brown Walker Wright Green Baker O'Brien Murphy MacDonald",
    ),
    "DE": (
        "Lukas Jonas Felix Maximilian Stefan Thomas Hans",
        "Anna Julia Lea Sophie Laura Katharina Marie",
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker",
    ),
    "FR": (
        "Pierre Jean Louis Nicolas Antoine Julien",
        "Marie Camille Chloé Léa Manon Isabelle",
        "Martin Bernard Dubois Moreau Laurent Lefèvre",
    ),
    "AU": ("Jack Liam Noah Ethan Lachlan", "Chloe Emily Isla Mia Ruby", "Wilson Thompson White Harris Kelly"),
}
WESTERN_COUNTRY_WEIGHTS = {"US": 35, "GB": 20, "DE": 20, "FR": 15, "AU": 10}
ABROAD = {
    # country: (state, city, postcode, street, mobile prefix, mobile digits)
    "US": ("CA", "San Francisco", "94103", "Market St", "+1 415", 7),
    "GB": ("", "London", "W1U 6TY", "Baker Street", "+44 7911", 6),
    "DE": ("BY", "München", "80331", "Kaufingerstraße", "+49 151", 8),
    "FR": ("", "Paris", "75008", "Rue du Faubourg Saint-Honoré", "+33 6", 8),
    "AU": ("NSW", "Sydney", "2000", "George St", "+61 412", 6),
}


@dataclass(frozen=True)
class District:
    name: str
    area_code: str  # first six digits of a resident ID issued there
    postcode: str
    streets: tuple[str, ...]


@dataclass(frozen=True)
class City:
    province: str
    name: str
    phone_code: str
    region: str
    weight: int
    districts: tuple[District, ...]
    legacy_code: str = ""  # an area code valid before the districts' own (most date from the 1980s)

    @property
    def municipality(self) -> bool:
        return self.province == self.name

    @property
    def short(self) -> str:
        return self.name.removesuffix("市")


def _city(
    province: str, name: str, phone_code: str, region: str, weight: int, *districts: str, legacy: str = ""
) -> City:
    parsed = []
    for spec in districts:
        dname, code, postcode, streets = spec.split("|")
        parsed.append(District(dname, code, postcode, tuple(streets.split())))
    return City(province, name, phone_code, region, weight, tuple(parsed), legacy)


CITIES: list[City] = [
    _city(
        "上海市",
        "上海市",
        "021",
        "east",
        30,
        "黄浦区|310101|200001|南京东路 西藏中路 淮海中路 复兴中路",
        "徐汇区|310104|200030|漕溪北路 肇嘉浜路 衡山路 虹桥路",
        "静安区|310106|200040|南京西路 延安中路 江宁路 北京西路",
        "浦东新区|310115|200120|世纪大道 张杨路 锦绣路 东方路",
        "闵行区|310112|201100|莘松路 七莘路 沪闵路 都市路",
        "杨浦区|310110|200082|国定路 四平路 控江路 黄兴路",
    ),
    _city(
        "北京市",
        "北京市",
        "010",
        "north",
        25,
        "朝阳区|110105|100020|三里屯路 建国路 朝阳北路 望京街",
        "海淀区|110108|100080|中关村大街 学院路 知春路 花园路",
        "东城区|110101|100010|王府井大街 东直门内大街 和平里东街",
        "西城区|110102|100032|金融大街 西单北大街 德胜门外大街",
        "丰台区|110106|100071|丰台北路 方庄路 草桥东路",
    ),
    _city(
        "江苏省",
        "南京市",
        "025",
        "east",
        5,
        "玄武区|320102|210018|中山路 北京东路 珠江路",
        "鼓楼区|320106|210008|中山北路 湖南路 广州路",
        legacy="320121",
    ),
    _city(
        "江苏省",
        "苏州市",
        "0512",
        "east",
        5,
        "姑苏区|320508|215000|人民路 干将路 观前街",
        "吴中区|320506|215128|东吴北路 宝带西路",
        legacy="320121",
    ),
    _city(
        "浙江省",
        "杭州市",
        "0571",
        "east",
        6,
        "西湖区|330106|310012|文三路 天目山路 教工路",
        "上城区|330102|310002|延安路 解放路 庆春路",
        legacy="330122",
    ),
    _city(
        "天津市",
        "天津市",
        "022",
        "north",
        4,
        "和平区|120101|300041|南京路 滨江道",
        "河西区|120103|300202|友谊路 围堤道",
    ),
    _city("山东省", "青岛市", "0532", "north", 3, "市南区|370202|266001|香港中路 山东路 中山路", legacy="370223"),
    _city(
        "广东省",
        "广州市",
        "020",
        "south",
        5,
        "天河区|440106|510620|天河路 体育西路 华夏路",
        "越秀区|440104|510030|中山五路 北京路 环市东路",
        legacy="440121",
    ),
    _city(
        "广东省",
        "深圳市",
        "0755",
        "south",
        5,
        "南山区|440305|518052|科技南路 深南大道 后海大道",
        "福田区|440304|518033|福华路 深南中路 益田路",
        legacy="440320",
    ),
    _city(
        "四川省",
        "成都市",
        "028",
        "west",
        4,
        "武侯区|510107|610041|人民南路 科华北路 武侯祠大街",
        "锦江区|510104|610021|春熙路 红星路 东大街",
        legacy="510121",
    ),
    _city(
        "湖北省",
        "武汉市",
        "027",
        "central",
        3,
        "武昌区|420106|430061|中北路 中南路 解放路",
        "江岸区|420102|430010|解放大道 建设大道",
        legacy="420121",
    ),
    _city("陕西省", "西安市", "029", "west", 2, "雁塔区|610113|710061|小寨东路 长安中路 科技路", legacy="610121"),
]
CITY_BY_NAME = {c.name: c for c in CITIES}
# Resident IDs only validate with an area code that existed in the birth year; these always did.
_STABLE_AREA_CODES = ["310101", "310104", "310106", "110101", "110102", "110105", "110108", "120101", "120103"]

ESTATES = "阳光花园 世纪华庭 锦绣江南 金色家园 翠湖天地 东方名城 绿地新都会 华润中心 万科城市花园 滨江公寓".split()
MOBILE_PREFIXES = (
    "134 135 136 137 138 139 150 151 152 157 158 159 182 183 187 188 198 130 131 132 155 156 185 186 166 "
    "133 153 180 181 189 199 191 177 173"
).split()
EMAIL_DOMAINS = {
    "qq.com": 30,
    "163.com": 20,
    "126.com": 8,
    "gmail.com": 5,
    "outlook.com": 5,
    "sina.com": 4,
    "foxmail.com": 3,
    "139.com": 3,
    "hotmail.com": 2,
}
COMPANY_BRANDS = "锦程 华信 云帆 恒泰 瑞丰 宏达 新元 博远 天成 嘉禾 中联 汇通 鼎盛 启明 德润 安和".split()
COMPANY_TRADES = "贸易 科技 网络科技 餐饮管理 建筑工程 医疗器械 文化传媒 物流 咨询 电子商务".split()
JOB_TITLES = (
    "经理 销售经理 市场总监 工程师 会计 行政主管 采购经理 总经理 设计师 人事专员 产品经理 财务总监 教师 医生"
).split()
JOB_TITLES_EN = ["General Manager", "Sales Director", "Engineer", "Consultant", "Marketing Manager", "Teacher"]
# name, lowest and highest unit price in CNY
PRODUCTS: list[tuple[str, int, int]] = [
    ("无线降噪耳机", 899, 1599),
    ("智能手表", 1299, 2999),
    ("充电宝 20000mAh", 129, 199),
    ("蓝牙音箱", 299, 699),
    ("保湿精华液 50ml", 380, 680),
    ("玻尿酸面膜 10片", 99, 169),
    ("口红礼盒", 320, 520),
    ("羊绒围巾", 599, 1299),
    ("羊毛大衣", 1899, 3999),
    ("纯棉T恤", 99, 199),
    ("跑步鞋", 499, 899),
    ("空气净化器", 1999, 3599),
    ("扫地机器人", 2299, 3999),
    ("真丝床品四件套", 899, 1899),
    ("明前龙井礼盒", 368, 888),
    ("坚果礼盒", 128, 238),
    ("婴儿推车", 1580, 3280),
    ("有机奶粉 800g", 268, 368),
    ("保温杯", 129, 259),
    ("行李箱 24寸", 699, 1399),
]
NICKNAMES = ["小雨点", "momo", "阿杰", "Lucky", "夏天", "橙子", "大白", "木木"]
ESHOP_TAGS = ["数码控", "美妆达人", "母婴", "家居", "高频复购", "大促敏感", "新客"]
POS_LEVELS = ["普卡", "普卡", "银卡", "银卡", "金卡", "钻石卡"]
TICKETS: dict[str, list[str]] = {
    "退货": ["退货申请：{p}", "退货：尺码不合适（{p}）", "退换货：{p} 有瑕疵"],
    "发票": ["发票开具：订单 {o}", "发票抬头更改", "增值税专用发票申请"],
    "投诉": ["投诉：配送延误", "投诉：门店服务态度", "投诉：{p} 质量问题"],
    "咨询": ["咨询：会员积分", "咨询：{p} 保修政策", "咨询：门店营业时间"],
}
CALL_TOPICS = ["来电：查询订单物流", "来电：修改收货地址", "回访：满意度调查", "来电：积分兑换", "外呼：会员日活动邀约"]
AGENTS = ["1023", "1031", "1047", "1052", "1108", "1115"]
SALES_REPS = ["李娜", "陈强", "周敏", "王磊"]


# ---------------------------------------------------------------------------------------------
# People: the truth behind the records
# ---------------------------------------------------------------------------------------------


@dataclass
class Person:
    pid: int
    western: bool
    family: str
    given: str
    gender: str
    birth: date
    nationality: str = "CN"
    country: str = "CN"  # where they live
    city: City | None = None
    district: District | None = None
    street_line: str = ""  # the address below the district
    abroad: tuple[str, str, str, str] | None = None  # state, city, postcode, street line
    id_number: str = ""  # resident ID, or a passport number for foreigners
    mobile: str = ""  # 11 digits for a mainland mobile, E.164 for a foreign one
    phone: str = ""  # landline in national form, e.g. 021-62345678
    email: str = ""
    company: str = ""
    job_title: str = ""
    unionid: str = ""
    member_no: str = ""
    sources: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    borrowed_mobile: str = ""  # a household member's mobile this person gives instead of their own
    role: str = ""  # namesake / household / twin / vip: the planted cases

    @property
    def full_name(self) -> str:
        return f"{self.given} {self.family}" if self.western else self.family + self.given

    @property
    def region(self) -> str:
        return self.city.region if self.city else ""


@dataclass
class RecordPlan:
    """One source record and its interactions, ready to be written."""

    person: Person
    source: str
    key: str
    raw: dict[str, Any]
    normalized: dict[str, Any]
    flags: dict[str, str]
    first_seen: datetime
    last_seen: datetime
    team: str
    region: str
    interactions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DemoData:
    people: list[Person]
    records: list[RecordPlan]


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def resident_id_valid(number: str) -> bool:
    try:
        return ric.is_valid(number)
    except KeyError:  # python-stdnum raises it for a few prefix-only area codes
        return False


def _resident_id(rng: random.Random, area_codes: list[str], birth: date, gender: str, seq: int | None = None) -> str:
    """A valid GB 11643 number: area, birth date, sequence (odd for men), check digit.

    The area code must have existed in the birth year (python-stdnum checks it): the first of
    ``area_codes`` that did is used, else one of the codes that always existed."""
    if seq is None:
        seq = rng.randrange(0, 499) * 2 + (1 if gender == "M" else 0)
    for code in [*filter(None, area_codes), *rng.sample(_STABLE_AREA_CODES, len(_STABLE_AREA_CODES))]:
        body = f"{code}{birth:%Y%m%d}{seq:03d}"
        number = body + ric.calc_check_digit(body + "0")
        if resident_id_valid(number):
            return number
    raise AssertionError("no valid area code")  # pragma: no cover - _STABLE_AREA_CODES always validate


def _passport(rng: random.Random, country: str) -> str:
    digits = "".join(rng.choices(string.digits, k=8))
    return {"US": "5", "GB": "1", "DE": "C", "FR": "1", "AU": "P"}.get(country, "X") + digits


class _Factory:
    """Draws people, keeping mobiles, emails and keys unique where real systems would have them unique."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.mobiles: set[str] = set()
        self.emails: set[str] = set()
        self.cards: set[str] = set()
        city_companies = [c for c in CITIES for _ in range(c.weight // 5 + 1)]
        self.companies = [
            f"{rng.choice(city_companies).short}{b}{rng.choice(COMPANY_TRADES)}有限公司" for b in COMPANY_BRANDS
        ]
        self.next_pid = 1

    def mobile(self) -> str:
        while True:
            number = self.rng.choice(MOBILE_PREFIXES) + "".join(self.rng.choices(string.digits, k=8))
            if number not in self.mobiles:
                self.mobiles.add(number)
                return number

    def foreign_mobile(self, country: str) -> str:
        prefix, digits = ABROAD[country][4], ABROAD[country][5]
        while True:
            tail = str(self.rng.randrange(2, 10)) + "".join(self.rng.choices(string.digits, k=digits - 1))
            number = prefix.replace(" ", "") + tail
            if number not in self.mobiles and clean_mobile(number).flag == "":
                self.mobiles.add(number)
                return number

    def landline(self, city: City) -> str:
        while True:
            number = f"{city.phone_code}-{self.rng.randrange(2, 9)}{self.rng.randrange(0, 10**7):07d}"
            if clean_mobile(number).flag == "":
                return number

    def card(self) -> str:
        while True:
            number = "8860" + "".join(self.rng.choices(string.digits, k=8))
            if number not in self.cards:
                self.cards.add(number)
                return number

    def email(self, p: Person) -> str:
        rng = self.rng
        if p.western:
            local = rng.choice([f"{p.given}.{p.family}", f"{p.given[0]}{p.family}", f"{p.given}{rng.randrange(1, 99)}"])
            local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode().replace("'", "").lower()
            domain = rng.choice(["gmail.com", "outlook.com", "hotmail.com", "icloud.com"])
        else:
            family, given = _pinyin(p.family), _pinyin(p.given)
            domain = _pick(rng, EMAIL_DOMAINS)
            if domain == "qq.com" and rng.random() < 0.7:
                local = str(rng.randrange(10**5, 3 * 10**9))  # QQ numbers
            else:
                local = rng.choice(
                    [
                        family + given,
                        f"{family}.{given}",
                        f"{given}.{family}",
                        f"{family}{given}{p.birth:%y}",
                        f"{family[0]}{given}{rng.randrange(1, 999)}",
                    ]
                )
        if p.company and rng.random() < 0.25:
            domain = _company_domain(p.company)
            if local.isdigit():
                local = f"{_pinyin(p.given)}.{_pinyin(p.family)}" if not p.western else local
        address = f"{local}@{domain}"
        while address in self.emails:
            address = f"{local}{rng.randrange(1, 100)}@{domain}"
        self.emails.add(address)
        return address

    def place(self, western: bool) -> tuple[City, District]:
        rng = self.rng
        if western:  # expats live mostly in the two big cities
            city = CITY_BY_NAME[rng.choices(["上海市", "北京市", "深圳市", "广州市"], weights=[50, 35, 10, 5])[0]]
        else:
            city = rng.choices(CITIES, weights=[c.weight for c in CITIES])[0]
        return city, rng.choice(city.districts)

    def street_line(self, city: City, district: District) -> str:
        rng = self.rng
        street = rng.choice(district.streets)
        if city.name == "上海市":
            lane, number, room = rng.randrange(1, 1500), rng.randrange(1, 40), rng.randrange(101, 3005)
            return f"{street}{lane}弄{number}号{room}室"
        if city.name == "北京市":
            return (
                f"{street}{rng.randrange(1, 300)}号院{rng.randrange(1, 20)}号楼"
                f"{rng.randrange(1, 6)}单元{rng.randrange(1, 25)}0{rng.randrange(1, 4)}"
            )
        number, building, room = rng.randrange(1, 800), rng.randrange(1, 30), rng.randrange(101, 3305)
        return f"{street}{number}号{rng.choice(ESTATES)}{building}栋{room}室"

    def birth(self, lo: int = 18, hi: int = 75, mode: int = 33) -> date:
        age = self.rng.triangular(lo, hi, mode)
        return ANCHOR - timedelta(days=int(age * 365.25))

    def chinese_given(self, gender: str, birth: date) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            return rng.choice(GIVEN_SINGLE[gender])
        first, second = (GIVEN_OLD if birth.year < 1975 else GIVEN_NEW)[gender]
        return rng.choice(first) + rng.choice(second)

    def person(
        self,
        *,
        western: bool | None = None,
        gender: str | None = None,
        family: str | None = None,
        given: str | None = None,
        birth: date | None = None,
        city: City | None = None,
        district: District | None = None,
    ) -> Person:
        rng = self.rng
        western = rng.random() < 0.15 if western is None else western
        gender = gender or rng.choice("MF")
        birth = birth or self.birth()
        pid, self.next_pid = self.next_pid, self.next_pid + 1
        if western:
            country = _pick(rng, WESTERN_COUNTRY_WEIGHTS)
            males, females, families = WESTERN_NAMES[country]
            p = Person(
                pid,
                True,
                family or rng.choice(families.split()),
                given or rng.choice((males if gender == "M" else females).split()),
                gender,
                birth,
                nationality=country,
            )
            p.id_number = _passport(rng, country)
            if rng.random() < 0.25:  # lives abroad: shops online from home
                state, cname, postcode, street = ABROAD[country][:4]
                p.country, p.abroad = country, (state, cname, postcode, f"{rng.randrange(1, 2000)} {street}")
                p.mobile = self.foreign_mobile(country)
            else:
                p.mobile = self.mobile() if rng.random() < 0.8 else self.foreign_mobile(country)
            if rng.random() < 0.5:
                p.company, p.job_title = rng.choice(self.companies), rng.choice(JOB_TITLES_EN)
        else:
            family = family or rng.choices(SURNAMES, weights=SURNAME_WEIGHTS)[0]
            p = Person(pid, False, family, given or self.chinese_given(gender, birth), gender, birth)
            p.mobile = self.mobile()
            if rng.random() < 0.35:
                p.company, p.job_title = rng.choice(self.companies), rng.choice(JOB_TITLES)
        if p.abroad is None:
            if city is None:
                city, district = self.place(western)
            p.city, p.district = city, district or rng.choice(city.districts)
            p.street_line = self.street_line(p.city, p.district)
            if not western:
                # Most people hold an ID from where they live; migrants one from elsewhere.
                home = p.city if rng.random() < 0.6 else rng.choice(CITIES)
                issued = p.district if home is p.city else rng.choice(home.districts)
                p.id_number = _resident_id(rng, [issued.area_code, home.legacy_code], birth, gender)
            if rng.random() < 0.3:
                p.phone = self.landline(p.city)
        if rng.random() < (0.95 if western else 0.7):
            p.email = self.email(p)
        if rng.random() < (0.3 if western else 0.8):
            p.unionid = "o" + "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=27))
        return p


def _pinyin(text: str) -> str:
    return "".join(lazy_pinyin(text)).replace(" ", "").lower()


def _company_domain(company: str) -> str:
    brand = next((b for b in COMPANY_BRANDS if b in company), company[:2])
    return f"{_pinyin(brand)}.com.cn"


def _source_count(rng: random.Random) -> int:
    # A third of the people are in two or more sources.
    return rng.choices([1, 2, 3, 4], weights=[66, 21, 9, 4])[0]


def _choose_sources(rng: random.Random, p: Person, k: int) -> list[str]:
    if p.abroad:
        weights = {"web": 40, "eshop": 55, "callcenter": 5}
    else:
        region = p.region
        weights = {
            "web": 22,
            "eshop": 30,
            "callcenter": 12,
            "erp": 10 if (p.company or rng.random() < 0.3) else 2,
            "pos_sh": 25 if region == "east" else 3,
            "pos_bj": 25 if region == "north" else 3,
        }
    chosen: list[str] = []
    while len(chosen) < min(k, len(weights)):
        code = _pick(rng, {c: w for c, w in weights.items() if c not in chosen})
        chosen.append(code)
    return chosen


def _make_people(rng: random.Random, n: int) -> list[Person]:
    f = _Factory(rng)
    people: list[Person] = []

    # Namesakes: two different people with the same common name in the same city (often the same store).
    for i in range(max(1, n // 50)):
        family, given, gender = COMMON_NAMES[i % len(COMMON_NAMES)]
        city = CITY_BY_NAME["上海市" if i % 2 == 0 else "北京市"]
        shared = ["pos_sh" if city.name == "上海市" else "pos_bj"] if rng.random() < 0.6 else []
        for _ in range(2):
            p = f.person(western=False, gender=gender, family=family, given=given, city=city)
            p.role, p.sources = "namesake", list(shared)
            people.append(p)

    # Households: one address and landline; a parent without a mobile of their own gives the child's.
    for _ in range(max(1, n // 60)):
        head = f.person(western=False, gender="M", birth=f.birth(30, 50, 38))
        spouse = f.person(
            western=False,
            gender="F",
            birth=head.birth + timedelta(days=rng.randrange(-1500, 1500)),
            city=head.city,
            district=head.district,
        )
        parent = f.person(
            western=False,
            gender="F",
            birth=head.birth - timedelta(days=rng.randrange(8500, 12000)),
            city=head.city,
            district=head.district,
        )
        phone = head.phone or f.landline(head.city)  # type: ignore[arg-type]
        for member in (head, spouse, parent):
            member.role, member.phone, member.street_line = "household", phone, head.street_line
        parent.borrowed_mobile = head.mobile
        if rng.random() < 0.5:
            spouse.borrowed_mobile = head.mobile  # registered at the store with her husband's number
        store = "pos_sh" if head.region == "east" else "pos_bj" if head.region == "north" else "eshop"
        parent.sources = [store]
        spouse.sources = [store] if rng.random() < 0.7 else []
        people += [head, spouse, parent]

    # Twins: same birth date, address, landline and consecutive ID sequence numbers; other given names.
    for _ in range(max(1, n // 100)):
        birth = f.birth(18, 40, 26)
        a = f.person(western=False, birth=birth)
        first, second = (GIVEN_NEW[a.gender][0], GIVEN_NEW[a.gender][1])
        shared_char = rng.choice(first)
        a.given = shared_char + rng.choice(second)
        b = f.person(
            western=False,
            gender=a.gender,
            family=a.family,
            birth=birth,
            city=a.city,
            district=a.district,
            given=shared_char + rng.choice([c for c in second if c != a.given[1]]),
        )
        area = a.id_number[:6]
        seq = int(a.id_number[14:17]) // 2 * 2 + (1 if a.gender == "M" else 0)
        seq = min(seq, 995)
        a.id_number = _resident_id(rng, [area], birth, a.gender, seq)
        b.id_number = _resident_id(rng, [area], birth, b.gender, seq + 2)
        b.street_line, b.phone = a.street_line, a.phone or f.landline(a.city)  # type: ignore[arg-type]
        a.phone = b.phone
        store = "pos_sh" if a.region == "east" else "pos_bj" if a.region == "north" else "eshop"
        for twin in (a, b):
            twin.role, twin.sources = "twin", [store]
        people += [a, b]

    while len(people) < n:
        people.append(f.person())
    del people[n:]

    for p in people:
        k = _source_count(rng)
        extra = [s for s in _choose_sources(rng, p, k + len(p.sources)) if s not in p.sources]
        p.sources = (p.sources + extra)[: max(k, len(p.sources))]
        if "erp" in p.sources and not p.company and rng.random() < 0.85:
            p.company, p.job_title = rng.choice(f.companies), rng.choice(JOB_TITLES_EN if p.western else JOB_TITLES)
        if any(s in STORES for s in p.sources):
            p.member_no = f.card()
        if rng.random() < 0.2:
            p.tags.append(rng.choice(ESHOP_TAGS))
    rng.shuffle(people)
    return people


# ---------------------------------------------------------------------------------------------
# Rendering: how each source writes a person down
# ---------------------------------------------------------------------------------------------

_ASCII = string.digits + string.ascii_letters
_FULLWIDTH = str.maketrans(_ASCII, "".join(chr(ord(c) + 0xFEE0) for c in _ASCII))
MOBILE_STYLES: dict[str, dict[str, int]] = {
    "web": {"plain": 50, "e164": 25, "spaced": 15, "dashed_intl": 10},
    "eshop": {"plain": 60, "spaced": 25, "cc": 15},
    "pos_sh": {"plain": 60, "dashed": 20, "fullwidth": 10, "spaced": 10},
    "pos_bj": {"plain": 50, "dashed": 25, "intl00": 15, "fullwidth": 10},
    "callcenter": {"plain": 60, "lead0": 25, "cc": 15},
    "erp": {"plain": 40, "dashed_intl": 30, "intl00": 20, "paren": 10},
}


def format_mobile(number: str, style: str) -> str:
    """``number`` (11 mainland digits, or E.164 abroad) the way one system writes it."""
    if number.startswith("+"):  # foreign: fewer variants in the wild
        return {"e164": number, "intl00": "00" + number[1:], "lead0": "00" + number[1:]}.get(
            style, f"{number[:3]} {number[3:6]} {number[6:]}"
        )
    a, b, c = number[:3], number[3:7], number[7:]
    return {
        "plain": number,
        "e164": "+86" + number,
        "spaced": f"{a} {b} {c}",
        "dashed": f"{a}-{b}-{c}",
        "dashed_intl": f"+86-{a}-{b}-{c}",
        "intl00": "0086 " + number,
        "cc": "86" + number,
        "fullwidth": number.translate(_FULLWIDTH),
        "paren": f"(+86){number}",
        "lead0": "0" + number,
    }[style]


Rendered = tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]  # key, raw, as-written values, region


class _Renderer:
    def __init__(self, rng: random.Random, now: datetime) -> None:
        self.rng = rng
        self.now = now
        self.counters: dict[str, int] = {"web": 1200, "eshop": 10230000, "erp": 1000}
        self.callers: set[str] = set()
        self.external_seq: dict[str, int] = {}

    # -- values ----------------------------------------------------------------------------
    def name(self, p: Person, source: str, repeat: bool) -> str:
        """The person's name as typed into ``source``; ``repeat`` means another system has them already."""
        rng = self.rng
        if p.western:
            name = p.full_name
            r = rng.random()
            if r < 0.15:
                name = f"{p.family.upper()} {p.given}"
            elif r < 0.25:
                name = f"{p.family}, {p.given}"
            elif r < 0.32:
                name = name.upper()
            if repeat and rng.random() < 0.15:
                name = name.replace("ü", "ue").replace("é", "e").replace("è", "e").replace("'", "’")
            if repeat and rng.random() < 0.05:
                name = name.replace(p.given, p.given[:-1] if len(p.given) > 4 else p.given + p.given[-1])
            if rng.random() < 0.03:
                name = name.translate(_FULLWIDTH)
        else:
            family, given = p.family, p.given
            if repeat and rng.random() < 0.10:  # an input-method homophone
                if rng.random() < 0.2 and family in SURNAME_TYPOS:
                    family = SURNAME_TYPOS[family]
                else:
                    i = rng.randrange(len(given))
                    given = given[:i] + TYPOS.get(given[i], given[i]) + given[i + 1 :]
            name = family + given
            if rng.random() < (0.08 if source == "pos_bj" else 0.03):
                name = "".join(TRADITIONAL.get(c, c) for c in name)
            if len(name) == 2 and rng.random() < (0.3 if source == "pos_bj" else 0.04):
                name = name[0] + "\u3000" + name[1]  # padded to align with three-character names
        if rng.random() < 0.06:
            name += " "
        return name

    def mobile(self, p: Person, source: str, avoid: str | None = None) -> str:
        number = p.borrowed_mobile or p.mobile
        styles = dict(MOBILE_STYLES[source])
        text = format_mobile(number, _pick(self.rng, styles))
        if text == avoid:  # a repeat appearance is written differently from the first
            styles = {s: w for s, w in styles.items() if format_mobile(number, s) != avoid} or {"e164": 1}
            text = format_mobile(number, _pick(self.rng, styles))
        if source.startswith("pos") and self.rng.random() < 0.02:
            text = text[:-1]  # a digit lost at the till: fails validation
        return text

    def email(self, p: Person, keyed_by_staff: bool = False) -> str | None:
        if not p.email:
            return None
        r = self.rng.random()
        if r < 0.08:
            return p.email.upper()
        if r < 0.12:
            return f" {p.email}"
        if keyed_by_staff and r < 0.16:
            return p.email.rsplit(".", 1)[0]  # '.com' forgotten: fails validation
        return p.email

    def id_number(self, p: Person, source: str) -> str:
        value = p.id_number
        if not p.western:
            if value.endswith("X") and self.rng.random() < 0.5:
                value = value[:-1] + "x"
            if source == "erp" and self.rng.random() < 0.05:  # two digits swapped when keyed in: fails the checksum
                value = value[:10] + value[11] + value[10] + value[12:]
        return value

    def gender(self, p: Person, source: str) -> str | int:
        return {
            "web": {"M": "male", "F": "female"},
            "eshop": {"M": 1, "F": 2},
            "pos_sh": {"M": "男", "F": "女"},
            "pos_bj": {"M": "M", "F": "F"},
            "callcenter": {"M": "先生", "F": "女士"},
            "erp": {"M": "M", "F": "F"},
        }[source][p.gender]

    def address(self, p: Person, *, with_region: float) -> tuple[str, dict[str, str]]:
        """The address as written (with the province/city/district in front or not) and what a
        parser gets out of it: the region columns and the street line."""
        if p.abroad:
            state, city, postcode, line = p.abroad
            text = f"{line}, {city} {state} {postcode}".replace("  ", " ")
            return text, {"province": state, "city": city, "postcode": postcode, "address": line}
        assert p.city is not None and p.district is not None
        rng = self.rng
        line, parsed = p.street_line, {"address": p.street_line}
        r = rng.random()
        if r < with_region + 0.25:
            if r < with_region:
                prefix = p.city.name if p.city.municipality else p.city.province + p.city.name
                if p.city.municipality and rng.random() < 0.1:
                    prefix = p.city.province + p.city.name  # 上海市上海市: systems that concatenate both levels
            else:
                prefix = p.city.short
            line = prefix + p.district.name + line
            parsed |= {"province": p.city.province, "city": p.city.name, "district": p.district.name}
        if rng.random() < 0.05:
            line = line.translate(_FULLWIDTH)
        return line, parsed

    def company(self, p: Person) -> str:
        name = p.company
        if not name or p.western:
            return name
        r = self.rng.random()
        city = next((c.short for c in CITIES if name.startswith(c.short)), "")
        if r < 0.15 and city:
            return name[len(city) :].replace("有限公司", f"（{city}）有限公司")
        if r < 0.25:
            return name.removesuffix("有限公司")
        return name

    def openid(self, app: str) -> str:
        # openids are per app (same prefix for one app); only the unionid is shared across apps.
        return app + "".join(self.rng.choices(string.ascii_letters + string.digits + "-_", k=22))

    # -- timestamps -------------------------------------------------------------------------
    def first_seen(self, vip: bool = False) -> datetime:
        days = HISTORY_DAYS * (0.97 + 0.03 * self.rng.random() if vip else self.rng.random() ** 0.8)
        return self.now - timedelta(days=days, seconds=self.rng.randrange(86400))

    def between(self, start: datetime) -> datetime:
        span = (self.now - start).total_seconds()
        return start + timedelta(seconds=self.rng.random() * span)

    def opening_hours(self, ts: datetime, start: datetime, opens: int, closes: int) -> datetime:
        """``ts`` moved to a time of day when the store or the call center is open (local time)."""
        local = ts.astimezone(LOCAL_TZ)
        moved = local.replace(hour=self.rng.randrange(opens, closes), minute=self.rng.randrange(60))
        return moved if start <= moved <= self.now else ts

    @staticmethod
    def local(ts: datetime, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        return ts.astimezone(LOCAL_TZ).strftime(fmt)

    def external_id(self, prefix: str, ts: datetime, width: int = 6, date_format: str = "%Y%m%d") -> str:
        # A running number per prefix keeps (source, external_id) unique.
        seq = self.external_seq[prefix] = self.external_seq.get(prefix, 0) + 1
        return f"{prefix}{ts.astimezone(LOCAL_TZ).strftime(date_format)}{seq:0{width}d}"

    # -- records ----------------------------------------------------------------------------
    def render(self, p: Person, source: str, repeat: bool, first_mobile: str | None) -> Rendered | None:
        """How ``source`` holds ``p``; None when it cannot hold them apart from someone else."""
        render = getattr(self, f"_render_{source.split('_')[0]}")
        return render(p, source, repeat, first_mobile)

    def _render_web(self, p: Person, source: str, repeat: bool, first_mobile: str | None) -> Rendered:
        rng = self.rng
        self.counters["web"] += rng.randrange(1, 40)
        key = f"W{self.counters['web']:06d}"
        name = self.name(p, source, repeat)
        if p.western:
            last, first = p.family, p.given
        elif rng.random() < 0.85:
            last, first = name[: len(p.family)], name[len(p.family) :]
        else:  # the whole name typed into the first of two boxes
            last, first = "", name
        via_wechat = bool(p.unionid) and rng.random() < 0.6
        mobile, email = self.mobile(p, source, first_mobile), self.email(p)
        raw = {
            "user_id": key,
            "last_name": last,
            "first_name": first,
            "mobile": mobile,
            "email": email,
            "gender": self.gender(p, source) if rng.random() < 0.8 else None,
            "birthday": p.birth.isoformat() if rng.random() < 0.5 else None,
            "province": p.city.province.removesuffix("市").removesuffix("省") if p.city else p.abroad and p.abroad[0],
            "city": p.city.name if p.city else p.abroad and p.abroad[1],
            "country": p.country,
            "wechat_openid": self.openid("oWx3k") if via_wechat else None,
            "wechat_unionid": p.unionid if via_wechat and rng.random() < 0.8 else None,
            "register_channel": rng.choice(["官网", "微信公众号", "百度推广", "小红书"]),
            "utm_source": rng.choice(["baidu", "wechat", "xhs", "direct", None]),
            "agree_marketing": rng.random() < 0.55,
            "agree_sms": rng.random() < 0.6,
            "agree_email": rng.random() < 0.4,
        }
        mapped = {
            "full_name": f"{first} {last}" if p.western else last + first,
            "family_name": last if p.western else None,
            "given_name": first if p.western else None,
            "mobile": mobile,
            "email": email,
            "gender": raw["gender"],
            "birth_date": raw["birthday"],
            "country": p.country,
            "wechat_openid": raw["wechat_openid"],
            "wechat_unionid": raw["wechat_unionid"],
            "consent_marketing": raw["agree_marketing"],
            "consent_sms": raw["agree_sms"],
            "consent_email": raw["agree_email"],
        }
        region = {"province": p.city.province, "city": p.city.name} if p.city else {}
        if p.abroad:
            region = {"province": p.abroad[0], "city": p.abroad[1]}
        return key, raw, mapped, region

    def _render_eshop(self, p: Person, source: str, repeat: bool, first_mobile: str | None) -> Rendered:
        rng = self.rng
        self.counters["eshop"] += rng.randrange(1, 200)
        key = str(self.counters["eshop"])
        name = self.name(p, source, repeat)
        mobile, email = self.mobile(p, source, first_mobile), self.email(p)
        cross_border = not p.western and rng.random() < 0.25  # customs clearance needs the ID number
        address, parsed = self.address(p, with_region=0.8) if rng.random() < 0.9 else (None, {})
        raw = {
            "userId": int(key),
            "nickName": rng.choice(NICKNAMES),
            "realName": name if rng.random() < 0.85 else None,
            "phone": mobile,
            "email": email if rng.random() < 0.5 else None,
            "sex": self.gender(p, source) if rng.random() < 0.9 else 0,
            "birthday": f"{p.birth.year}/{p.birth.month}/{p.birth.day}" if rng.random() < 0.4 else None,
            "memberCardNo": p.member_no if p.member_no and rng.random() < 0.35 else None,
            "openId": self.openid("oMp7Q") if p.unionid and rng.random() < 0.9 else None,
            "unionId": p.unionid if p.unionid and rng.random() < 0.7 else None,
            "idCardNo": self.id_number(p, source) if cross_border else None,
            "receiverName": name.strip(),
            "receiverPhone": format_mobile(p.mobile, "spaced"),
            "receiverAddress": address,
            "receiverZip": (p.district.postcode if p.district else p.abroad and p.abroad[2]) if address else None,
            "vipLevel": f"V{rng.randrange(0, 6)}",
            "tags": list(p.tags),
            "smsSubscribe": rng.random() < 0.5,
        }
        mapped = {
            "full_name": raw["realName"] or raw["receiverName"],
            "mobile": mobile,
            "email": raw["email"],
            "gender": raw["sex"],
            "birth_date": raw["birthday"],
            "member_no": raw["memberCardNo"],
            "wechat_openid": raw["openId"],
            "wechat_unionid": raw["unionId"],
            "id_number": raw["idCardNo"],
            "address": parsed.pop("address", address),
            "postcode": raw["receiverZip"],
            "tags": raw["tags"],
            "consent_sms": raw["smsSubscribe"],
            "country": p.country,
        }
        return key, raw, mapped, parsed

    def _render_pos(self, p: Person, source: str, repeat: bool, first_mobile: str | None) -> Rendered:
        rng = self.rng
        store = STORES[source][0]
        level = "钻石卡" if p.role == "vip" else rng.choice(POS_LEVELS)
        card = p.member_no
        if source == "pos_bj" and "pos_sh" in p.sources and rng.random() < 0.5:
            card = "8861" + card[4:]  # a new card issued at the second store
        name = self.name(p, source, repeat)
        mobile, email = self.mobile(p, source, first_mobile), self.email(p, keyed_by_staff=True)
        address, parsed = self.address(p, with_region=0.3) if rng.random() < 0.5 else (None, {})
        id_no = self.id_number(p, source) if rng.random() < 0.15 else None
        birthday = rng.choice([p.birth.isoformat(), f"{p.birth:%m-%d}", None])  # often only the day, for coupons
        if source == "pos_sh":
            raw = {
                "会员卡号": card,
                "会员姓名": name,
                "性别": self.gender(p, source),
                "手机号码": mobile,
                "生日": birthday,
                "身份证号": id_no,
                "联系地址": address,
                "邮箱": email if rng.random() < 0.4 else None,
                "开卡门店": store,
                "会员等级": level,
                "积分": rng.randrange(0, 20000),
                "导购": rng.choice(SALES_REPS),
                "备注": rng.choice(["", "", "老顾客", "喜欢新品"]),
            }
            email = raw["邮箱"]
        else:  # the older POS version at the Beijing store: other column names and formats
            if birthday and len(birthday) > 5:
                birthday = f"{p.birth:%Y%m%d}"
            raw = {
                "卡号": card,
                "姓名": name,
                "性别": self.gender(p, source),
                "手机": mobile,
                "出生日期": birthday,
                "证件号码": id_no,
                "地址": address,
                "电子邮件": email if rng.random() < 0.3 else None,
                "门店": store,
                "等级": level,
                "积分余额": rng.randrange(0, 20000),
            }
            email = raw["电子邮件"]
        mapped = {
            "full_name": name,
            "gender": self.gender(p, source),
            "mobile": mobile,
            "birth_date": birthday if birthday and len(birthday) > 5 else None,  # a month-day is no birth date
            "id_number": id_no,
            "address": parsed.pop("address", address),
            "email": email,
            "member_no": card,
            "tags": [level],
        }
        return card, raw, mapped, parsed

    def _render_callcenter(self, p: Person, source: str, repeat: bool, first_mobile: str | None) -> Rendered | None:
        rng = self.rng
        number = p.borrowed_mobile or p.mobile
        if number in self.callers:
            return None  # the CTI knows one customer per number: a shared mobile is one record
        self.callers.add(number)
        key = self.mobile(p, source, first_mobile)
        name = self.name(p, source, repeat)
        if not p.western and rng.random() < 0.35:
            name = p.family + ("先生" if p.gender == "M" else "女士")  # often all the agent notes down
        address, parsed = self.address(p, with_region=0.2) if rng.random() < 0.3 else (None, {})
        company = self.company(p) if p.company and rng.random() < 0.5 else None
        raw = {
            "来电号码": key,
            "客户姓名": name,
            "性别": self.gender(p, source),
            "所在城市": p.city.short if p.city else p.abroad and p.abroad[1],
            "联系地址": address,
            "备用电话": p.phone or None,
            "电子邮箱": self.email(p, True) if rng.random() < 0.2 else None,
            "证件号码": self.id_number(p, source) if rng.random() < 0.1 else None,
            "客户类型": "企业" if company else "个人",
            "公司名称": company,
            "坐席备注": rng.choice(["", "", "脾气急，优先处理", "老客户", "需回访"]),
        }
        mapped = {
            "full_name": name,
            "gender": raw["性别"],
            "mobile": key,
            "phone": raw["备用电话"],
            "address": parsed.pop("address", address),
            "email": raw["电子邮箱"],
            "id_number": raw["证件号码"],
            "company": company,
        }
        region = {"city": p.city.name} if p.city else {}
        return key, raw, mapped, region | parsed

    def _render_erp(self, p: Person, source: str, repeat: bool, first_mobile: str | None) -> Rendered:
        rng = self.rng
        self.counters["erp"] += rng.randrange(1, 9)
        key = f"CUST-{self.counters['erp']:06d}"
        name = self.name(p, source, repeat).strip()
        mobile = self.mobile(p, source, first_mobile)
        phone = p.phone
        if phone and rng.random() < 0.3:
            phone = f"{phone}转{rng.randrange(8000, 8999)}"  # the switchboard and an extension
        if p.abroad:
            province, city, district, street, zipcode = p.abroad[0], p.abroad[1], None, p.abroad[3], p.abroad[2]
        else:
            assert p.city is not None and p.district is not None
            province, city, district = p.city.province, p.city.name, p.district.name
            street, zipcode = p.street_line, p.district.postcode
        raw = {
            "CustomerCode": key,
            "CustomerName": name,
            "Gender": self.gender(p, source),
            "DOB": f"{p.birth:%Y-%m-%d} 00:00:00" if rng.random() < 0.6 else None,
            "IDType": "护照" if p.western else "身份证",
            "IDNo": self.id_number(p, source) if rng.random() < 0.7 else None,
            "Mobile": mobile,
            "Tel": phone or None,
            "Email": self.email(p),
            "Company": self.company(p) or None,
            "Title": p.job_title or None,
            "Province": province if rng.random() < 0.85 else None,
            "City": city,
            "District": district,
            "Street": street,
            "ZipCode": zipcode,
            "Country": "中国" if p.country == "CN" and rng.random() < 0.3 else p.country,
            "CreditLimit": rng.choice([0, 10000, 50000, 100000]),
            "PaymentTerms": rng.choice(["NET30", "NET60", "预付"]),
            "SalesRep": rng.choice(SALES_REPS),
        }
        mapped = {
            "full_name": name,
            "gender": raw["Gender"],
            "birth_date": raw["DOB"],
            "id_number": raw["IDNo"],
            "mobile": mobile,
            "phone": phone or None,
            "email": raw["Email"],
            "company": raw["Company"],
            "job_title": raw["Title"],
            "address": street,
            "postcode": zipcode,
            "country": raw["Country"],
        }
        region = {
            "province": raw["Province"] or (p.city.province if p.city else None),
            "city": city,
            "district": district,
        }
        return key, raw, mapped, region


# ---------------------------------------------------------------------------------------------
# Normalizing: data-dictionary names -> cleaned values, as an import would store them
# ---------------------------------------------------------------------------------------------

_GENDERS = {
    "m": "M",
    "男": "M",
    "male": "M",
    "1": "M",
    "先生": "M",
    "f": "F",
    "女": "F",
    "female": "F",
    "2": "F",
    "女士": "F",
}
_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d", "%Y%m%d", "%Y年%m月%d日")
_HONORIFICS = {"先生": "M", "女士": "F", "小姐": "F"}


def _is_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" or "\u3400" <= c <= "\u4dbf" for c in text)


def clean_name(value: str) -> str:
    """Width, spacing and order cleaned: '张　伟 ' -> '张伟', 'SMITH, JOHN' -> 'John Smith'."""
    text = " ".join(unicodedata.normalize("NFKC", value).split())
    if _is_cjk(text):
        return text.replace(" ", "")
    if "," in text:
        last, first = (part.strip() for part in text.split(",", 1))
        text = f"{first} {last}"
    return text.title() if text.isupper() else text


def split_chinese_name(name: str) -> tuple[str, str]:
    for surname in COMPOUND_SURNAMES:
        if name.startswith(surname) and len(name) > len(surname):
            return surname, name[len(surname) :]
    return name[:1], name[1:]


def _parse_date(value: str) -> str | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value.strip(), fmt).date().isoformat()
        except ValueError:
            continue
    return None


def normalize(mapped: dict[str, Any], extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Clean ``mapped`` (values as written); ``extra`` holds region columns parsed out of the address."""
    out: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for name, value in mapped.items():
        if value is None or value == "" or value == []:
            continue
        if name in ("mobile", "phone"):
            text = str(value).split("转")[0]  # an extension is not part of the number
            cleaned = clean_mobile(text)
        elif name == "email":
            cleaned = clean_email(value)
        elif name == "id_number":
            cleaned = clean_id_number(value)
        else:
            cleaned = None
        if cleaned is not None:
            out[name] = cleaned.value
            if cleaned.flag:
                flags[name] = cleaned.flag
            continue
        if name == "full_name":
            full = clean_name(str(value))
            out["full_name"] = full
            if _is_cjk(full):
                honorific = next((h for h in _HONORIFICS if full.endswith(h) and len(full) <= len(h) + 2), None)
                if honorific:  # '张先生': a surname and a gender, no given name
                    out["family_name"] = full.removesuffix(honorific)
                    out.setdefault("gender", _HONORIFICS[honorific])
                else:
                    out["family_name"], out["given_name"] = split_chinese_name(full)
        elif name in ("family_name", "given_name", "company", "job_title", "address"):
            out[name] = " ".join(unicodedata.normalize("NFKC", str(value)).split())
        elif name == "gender":
            gender = _GENDERS.get(str(value).strip().lower())
            if gender:
                out["gender"] = gender
        elif name == "birth_date":
            parsed = _parse_date(str(value))
            if parsed:
                out["birth_date"] = parsed
            else:
                flags["birth_date"] = "not a date"
        elif name == "country":
            out["country"] = {"中国": "CN"}.get(str(value), str(value).upper())
        else:
            out[name] = value
    for name, value in extra.items():
        if value:
            out[name] = value
    return out, flags


def record_hash(normalized: dict[str, Any]) -> str:
    """Keyed hash of the normalized values: equal content, equal hash (see accounts.crypto)."""
    return content_hash(normalized)


# ---------------------------------------------------------------------------------------------
# Interactions
# ---------------------------------------------------------------------------------------------


def _items(rng: random.Random, bulk: bool = False) -> list[dict[str, Any]]:
    items = []
    for name, lo, hi in rng.sample(PRODUCTS, rng.choices([1, 2, 3], weights=[60, 30, 10])[0]):
        qty = rng.randrange(20, 300, 10) if bulk else rng.choices([1, 2, 3], weights=[80, 15, 5])[0]
        price = Decimal(rng.randrange(lo, hi + 1)) - Decimal("0.10") * rng.choice([0, 0, 1])
        if bulk:
            price = (price * Decimal("0.8")).quantize(Decimal("0.01"))
        items.append({"name": name, "qty": qty, "price": str(price)})
    return items


def _order_title(items: list[dict[str, Any]]) -> str:
    return "、".join(f"{i['name']} ×{i['qty']}" if i["qty"] > 1 else i["name"] for i in items)


def _interactions(r: _Renderer, plan: RecordPlan, count: int) -> list[dict[str, Any]]:
    rng, source, out = r.rng, plan.source, []
    if source == "web":
        out.append(
            {
                "kind": "signup",
                "external_id": f"REG-{plan.key}",
                "occurred_at": plan.first_seen,
                "title": "官网注册",
                "status": "completed",
                "details": {"channel": plan.raw["register_channel"]},
            }
        )
        count = min(count, 2)
    for _ in range(count):
        ts = r.between(plan.first_seen)
        if source in STORES or source == "callcenter":
            ts = r.opening_hours(ts, plan.first_seen, *((10, 22) if source in STORES else (8, 21)))
        recent = (r.now - ts).days < 14
        if source in ("eshop", "erp") or (source in STORES and rng.random() < 0.75):
            bulk = source == "erp"
            items = _items(rng, bulk)
            amount = sum(Decimal(i["price"]) * i["qty"] for i in items)
            if source == "eshop":
                ext = r.external_id("E", ts)
                status = "paid" if recent else rng.choices(["shipped", "refunded"], [94, 6])[0]
                details = {
                    "items": items,
                    "channel": rng.choice(["小程序", "App", "H5"]),
                    "pay_method": rng.choice(["微信支付", "支付宝"]),
                }
            elif source == "erp":
                ext = r.external_id("SO-", ts, 6, "%Y-")
                status = rng.choices(["shipped", "paid", "refunded"], [60, 37, 3])[0]
                details = {"items": items, "payment_terms": plan.raw["PaymentTerms"], "sales_rep": plan.raw["SalesRep"]}
            else:
                store, prefix, _ = STORES[source]
                ext, status = r.external_id(prefix, ts, 5), rng.choices(["paid", "refunded"], [94, 6])[0]
                details = {
                    "items": items,
                    "store": store,
                    "cashier": rng.choice(["0012", "0031", "0045"]),
                    "pay_method": rng.choice(["微信支付", "支付宝", "银联", "现金"]),
                }
            title = ("企业采购：" if bulk else "") + _order_title(items)
            out.append(
                {
                    "kind": "order",
                    "external_id": ext,
                    "occurred_at": ts,
                    "title": title[:300],
                    "status": status,
                    "amount": amount,
                    "details": details,
                }
            )
        elif source in STORES:
            store, prefix, _ = STORES[source]
            out.append(
                {
                    "kind": "visit",
                    "external_id": r.external_id(prefix + "V", ts, 5),
                    "occurred_at": ts,
                    "title": f"到店：{store}",
                    "status": "",
                    "details": {"store": store, "minutes": rng.randrange(5, 90)},
                }
            )
        elif source == "callcenter" and rng.random() < 0.5:
            category = rng.choice(list(TICKETS))
            order_no = f"E{rng.randrange(10**11, 10**12)}"
            title = rng.choice(TICKETS[category]).format(p=rng.choice(PRODUCTS)[0], o=order_no)
            closed = not recent or rng.random() < 0.4
            details = {
                "category": category,
                "agent": rng.choice(AGENTS),
                "priority": rng.choice(["normal", "normal", "high"]),
            }
            if closed:
                details["satisfaction"] = rng.randrange(1, 6)
            out.append(
                {
                    "kind": "ticket",
                    "external_id": r.external_id("TK", ts, 5),
                    "occurred_at": ts,
                    "title": title,
                    "status": "closed" if closed else "open",
                    "details": details,
                }
            )
        elif source == "callcenter":
            topic = rng.choice(CALL_TOPICS)
            out.append(
                {
                    "kind": "call",
                    "external_id": r.external_id("CL", ts, 5),
                    "occurred_at": ts,
                    "title": topic,
                    "status": rng.choices(["answered", "missed"], [90, 10])[0],
                    "details": {
                        "direction": "out" if topic.startswith(("回访", "外呼")) else "in",
                        "duration_s": rng.randrange(20, 900),
                        "agent": rng.choice(AGENTS),
                    },
                }
            )
        else:  # web
            out.append(
                {
                    "kind": "message",
                    "external_id": r.external_id("MSG", ts, 5),
                    "occurred_at": ts,
                    "title": rng.choice(["在线留言：询问门店地址", "在线留言：企业团购", "订阅新品邮件"]),
                    "status": "",
                    "details": {},
                }
            )
    return out


# ---------------------------------------------------------------------------------------------
# The whole data set
# ---------------------------------------------------------------------------------------------


# How many interactions an ordinary record has: 0..12, most a few.
INTERACTION_WEIGHTS = [8, 14, 14, 12, 10, 9, 8, 6, 5, 4, 3, 3, 2]


def generate(*, customers: int = 300, seed: int = 7, now: datetime | None = None) -> DemoData:
    """The demo data set for ``customers`` people, without touching the database."""
    rng = random.Random(seed)
    now = now or timezone.now()
    people = _make_people(rng, customers)
    renderer = _Renderer(rng, now)
    vip_count = max(2, min(8, customers // 100))
    vips = [p for p in people if not p.role and not p.western and any(s in ("eshop", "pos_sh") for s in p.sources)]
    vips = vips[:vip_count]
    for p in vips:
        p.role = "vip"
        p.tags = ["VIP", "高价值"]

    records: list[RecordPlan] = []
    for p in people:
        first_mobile: str | None = None
        main = next((s for s in p.sources if s in ("eshop", "pos_sh")), None)
        for i, source in enumerate(p.sources):
            rendered = renderer.render(p, source, repeat=i > 0, first_mobile=first_mobile)
            if rendered is None:
                continue
            key, raw, mapped, region = rendered
            first_mobile = first_mobile or raw[MOBILE_COLUMN[source]]
            normalized, flags = normalize(mapped, region)
            vip = p.role == "vip" and source == main
            first_seen = renderer.first_seen(vip)
            team = STORES[source][2] if source in STORES else ""
            plan = RecordPlan(p, source, key, raw, normalized, flags, first_seen, first_seen, team, p.region)
            count = rng.randrange(200, 320) if vip else rng.choices(range(13), weights=INTERACTION_WEIGHTS)[0]
            plan.interactions = _interactions(renderer, plan, count)
            if plan.interactions:
                plan.last_seen = max(i["occurred_at"] for i in plan.interactions)
            plan.last_seen = min(renderer.now, plan.last_seen + timedelta(hours=rng.randrange(1, 72)))
            _stamp_raw(plan)
            records.append(plan)
    return DemoData(people, records)


def multi_source_people(data: DemoData) -> int:
    sources: dict[int, set[str]] = {}
    for plan in data.records:
        sources.setdefault(plan.person.pid, set()).add(plan.source)
    return sum(1 for codes in sources.values() if len(codes) > 1)


def _stamp_raw(plan: RecordPlan) -> None:
    """The sources' own timestamp columns, in their own formats."""
    local = _Renderer.local
    first, last = plan.first_seen, plan.last_seen
    stamps = {
        "web": {"register_time": first.astimezone(LOCAL_TZ).isoformat(timespec="seconds")},
        "eshop": {"createdAt": local(first), "updatedAt": local(last)},
        "pos_sh": {"开卡日期": local(first, "%Y-%m-%d")},
        "pos_bj": {"入会时间": local(first, "%Y/%m/%d %H:%M")},
        "callcenter": {"首次来电": local(first), "最近来电": local(last)},
        "erp": {"CreatedOn": local(first), "ModifiedOn": local(last)},
    }[plan.source]
    plan.raw.update(stamps)


# ---------------------------------------------------------------------------------------------
# Writing it
# ---------------------------------------------------------------------------------------------


def _customer_from(plan: RecordPlan, owner: AbstractUser | None) -> Customer:
    values = {k: v for k, v in plan.normalized.items() if k in Customer.CORE_FIELDS and k not in plan.flags}
    if "birth_date" in values:
        values["birth_date"] = date.fromisoformat(values["birth_date"])
    full_name = values.get("full_name", "")
    customer = Customer(
        **values,
        name_pinyin=_pinyin(full_name) if full_name else "",
        team=plan.team,
        region=plan.region,
        owner=owner,
        created_at=plan.first_seen,
    )
    # bulk_create skips Customer.save(), which derives the blind index.
    customer.id_number_hash = blind_index(customer.id_number)
    return customer


def ensure_sources() -> dict[str, Source]:
    sources = {}
    for code, name, kind, trust, description in SOURCES:
        # get_or_create: a rerun must neither add history rows nor undo an admin's edits.
        sources[code], _ = Source.objects.get_or_create(
            code=code, defaults={"name": name, "kind": kind, "trust_rank": trust, "description": description}
        )
    return sources


def ensure_users(password: str) -> tuple[list[dict[str, str]], str]:
    """The demo users, created or with their password reset; returns them and the API token."""
    user_model = get_user_model()
    users = []
    token = ""
    for username, role, display in DEMO_USERS:
        user, _ = user_model.objects.get_or_create(username=username)
        first, last = display.split(" ", 1)
        user.first_name, user.last_name, user.email = first, last, f"{username}@demo.crmhub.invalid"
        user.is_active = True
        user.is_staff = role in (Role.ADMIN, Role.STEWARD)
        user.is_superuser = role == Role.ADMIN
        user.set_password(password)
        user.save()
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
        if role == Role.SALES:
            UserProfile.objects.update_or_create(user=user, defaults={"team": SALES_TEAM, "region": SALES_TEAM})
        if role == Role.API_CLIENT:
            token = Token.objects.get_or_create(user=user)[0].key
        users.append({"username": username, "role": role})
    return users, token


def _sealed(plan: RecordPlan, secret_names: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """raw and normalized with secret-level values encrypted, as every JSON column must hold them."""
    raw_secrets = {ID_COLUMN[plan.source]} if "id_number" in secret_names and plan.source in ID_COLUMN else set()
    return seal_values(plan.raw, raw_secrets), seal_values(plan.normalized, secret_names)


def _feed_values(customer: Customer) -> dict[str, Any]:
    return feed_values(customer_values_from_normalized({n: customer.get_value(n) for n in Customer.CORE_FIELDS}))


def _write(data: DemoData, sources: dict[str, Source], sales_user: AbstractUser) -> None:
    rng = random.Random(len(data.records))
    customers = [
        _customer_from(plan, sales_user if plan.source in ("pos_sh", "erp") and rng.random() < 0.1 else None)
        for plan in data.records
    ]
    Customer.objects.bulk_create(customers, batch_size=1000)
    # The resident ID is sealed even if the dictionary is not loaded (e.g. after a flush): never less safe.
    secret_names = secret_field_names() | {"id_number"}
    # Downstream systems learn of the new golden records through the change feed.
    created = [(customer.pk, _feed_values(customer)) for customer in customers]
    changes_record_bulk(
        (Change(ChangeEventType.CREATED, pk, sorted(values), values) for pk, values in created),
        secret_names=secret_names,
    )
    source_records = []
    for plan, customer in zip(data.records, customers, strict=True):
        raw, normalized = _sealed(plan, secret_names)
        source_records.append(
            SourceRecord(
                source=sources[plan.source],
                source_key=plan.key,
                customer=customer,
                raw=raw,
                normalized=normalized,
                # Hashed before sealing: ciphertexts differ every time, equal content must hash equal.
                flags=plan.flags,
                record_hash=record_hash(plan.normalized),
                first_seen_at=plan.first_seen,
                last_seen_at=plan.last_seen,
                source_updated_at=plan.last_seen - timedelta(minutes=rng.randrange(5, 600)),
            )
        )
    SourceRecord.objects.bulk_create(source_records, batch_size=1000)
    interactions = [
        Interaction(
            customer=customer,
            source=record.source,
            source_record=record,
            kind=i["kind"],
            external_id=i["external_id"],
            occurred_at=i["occurred_at"],
            title=i["title"],
            status=i["status"],
            amount=i.get("amount"),
            currency="CNY",
            details=i["details"],
        )
        for plan, customer, record in zip(data.records, customers, source_records, strict=True)
        for i in plan.interactions
    ]
    Interaction.objects.bulk_create(interactions, batch_size=2000)


def demo_counts() -> dict[str, int]:
    records = SourceRecord.objects.filter(source__code__in=SOURCE_CODES)
    return {
        "sources": Source.objects.filter(code__in=SOURCE_CODES).count(),
        "customers": Customer.objects.filter(pk__in=records.values("customer_id")).count(),
        "source_records": records.count(),
        "interactions": Interaction.objects.filter(source__code__in=SOURCE_CODES).count(),
    }


def demo_seed(*, customers: int = 300, seed: int = 7) -> dict[str, Any]:
    """Create the demo sources, users and data; a second call only resets the users' passwords.

    Returns the counts in the demo sources, whether data was generated, the people behind it
    (``people``: distinct persons; ``customers`` counts golden records, one per source record),
    the demo users and the API client's token.
    """
    started = time.monotonic()
    result: dict[str, Any] = {"created": False, "people": None, "multi_source_people": None, "vips": []}
    with change_context(channel=ChangeChannel.COMMAND, ref="seed_demo"), transaction.atomic():
        roles_sync()  # the role groups and their permissions, in case they were lost (e.g. a flush)
        users, token = ensure_users(settings.CRMHUB_DEMO_PASSWORD)
        sources = ensure_sources()
        # Idempotent by design: once the demo sources hold records, the data set is left alone.
        if not SourceRecord.objects.filter(source__code__in=SOURCE_CODES).exists():
            data = generate(customers=customers, seed=seed)
            _write(data, sources, get_user_model().objects.get(username="sales"))
            result |= {
                "created": True,
                "people": len(data.people),
                "multi_source_people": multi_source_people(data),
                "vips": [p.full_name for p in data.people if p.role == "vip"],
            }
    result |= demo_counts()
    result |= {"users": users, "api_token": token, "seconds": round(time.monotonic() - started, 2)}
    return result
