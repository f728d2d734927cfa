"""Generate a labelled data set for duplicate detection, written straight into the database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_dedup_bench \
        python bench/dedup_generate.py --records 10000 --reset

People are Chinese (85 %) and Western (15 %). Each person has one or more records (one golden
record + one source record each, as an import creates them before matching); duplicates carry
typos (sound-alike characters, traditional forms, letter slips), format variants, missing values,
swapped family/given names and day/month, transposed mobile digits, other e-mail domains. Hard
negatives: family members sharing a phone and an address, twins (same birth date, phone and
address), and very common names (张伟, 王芳, 李娜, 刘洋...) given to many different people.

The truth (customer_id, source_key, person) is written into the same database, table
``bench_dedup_truth``, so that it goes wherever the data goes (a copy of the database made with
``createdb -T`` carries it) and two databases never share one file.
Rows are inserted set-based (COPY on PostgreSQL, executemany on SQLite), not object by object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
# Rough shares: the first three cover about a fifth of people.
_W = np.r_[[7.2, 7.0, 6.8, 5.4, 4.5], np.full(len(SURNAMES) - 5, 1.0)]
SURNAME_P = _W / _W.sum()
GIVEN_CHARS = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉力国春海波宁燕琳欣怡子涵浩宇梓轩雨晨思佳一诺晓东"
)
COMMON_NAMES = ["张伟", "王伟", "王芳", "李伟", "李娜", "张敏", "李静", "王静", "刘伟", "王秀英", "张丽", "刘洋"]
SOUND_ALIKE = {
    "伟": "玮",
    "芳": "方",
    "娜": "纳",
    "静": "晶",
    "丽": "莉",
    "磊": "蕾",
    "军": "君",
    "洋": "阳",
    "杰": "洁",
    "明": "铭",
    "华": "化",
    "红": "虹",
    "张": "章",
    "王": "汪",
    "李": "理",
    "林": "琳",
    "宇": "雨",
    "涛": "韬",
}
TRADITIONAL = {
    "张": "張",
    "伟": "偉",
    "刘": "劉",
    "陈": "陳",
    "杨": "楊",
    "黄": "黃",
    "赵": "趙",
    "吴": "吳",
    "丽": "麗",
    "军": "軍",
    "华": "華",
    "红": "紅",
    "国": "國",
    "东": "東",
    "涛": "濤",
    "龙": "龍",
    "马": "馬",
}
WEST_FIRST = [
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Steven",
    "Andrew",
    "Emily",
    "Laura",
    "Anna",
    "Olivia",
]
NICK = {
    "William": "Bill",
    "Robert": "Bob",
    "Richard": "Rick",
    "James": "Jim",
    "Michael": "Mike",
    "Thomas": "Tom",
    "Joseph": "Joe",
    "Charles": "Charlie",
    "Elizabeth": "Liz",
    "Daniel": "Dan",
    "Matthew": "Matt",
    "Anthony": "Tony",
    "Andrew": "Andy",
    "Steven": "Steve",
    "Jennifer": "Jen",
    "Patricia": "Pat",
}
WEST_LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Martin",
    "Jackson",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Allen",
    "Young",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Hill",
    "Campbell",
    "Mitchell",
    "Roberts",
    "Carter",
    "Phillips",
    "Evans",
    "Turner",
    "Parker",
]
CITIES = [
    ("上海", "200"),
    ("北京", "100"),
    ("广州", "510"),
    ("深圳", "518"),
    ("杭州", "310"),
    ("成都", "610"),
    ("武汉", "430"),
    ("南京", "210"),
    ("西安", "710"),
    ("重庆", "400"),
    ("天津", "300"),
    ("苏州", "215"),
]
ROADS = list("人民中山解放建设和平长江黄河新华胜利光明文化友谊")
DOMAINS = ["qq.com", "163.com", "126.com", "sina.com", "gmail.com", "outlook.com", "foxmail.com"]


def id_checksum(first17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(c) * w for c, w in zip(first17, weights, strict=True))
    return "10X98765432"[total % 11]


class Person:
    __slots__ = (
        "address",
        "birth",
        "city",
        "email",
        "family",
        "gender",
        "given",
        "id_number",
        "mobile",
        "postcode",
        "western",
    )


def make_people(n: int, rng: np.random.Generator) -> list[Person]:
    people: list[Person] = []
    while len(people) < n:
        p = Person()
        p.western = rng.random() < 0.15
        p.gender = "M" if rng.random() < 0.5 else "F"
        if p.western:
            p.given = WEST_FIRST[rng.integers(len(WEST_FIRST))]
            p.family = WEST_LAST[rng.integers(len(WEST_LAST))]
        elif rng.random() < 0.04:
            name = COMMON_NAMES[rng.integers(len(COMMON_NAMES))]
            p.family, p.given = name[0], name[1:]
        else:
            p.family = SURNAMES[rng.choice(len(SURNAMES), p=SURNAME_P)]
            k = 1 if rng.random() < 0.35 else 2
            p.given = "".join(GIVEN_CHARS[i] for i in rng.integers(len(GIVEN_CHARS), size=k))
        p.birth = dt.date(1950, 1, 1) + dt.timedelta(days=int(rng.integers(0, 20000)))
        p.mobile = "1" + str(rng.integers(3, 10)) + f"{rng.integers(0, 10**9):09d}"
        city, prefix = CITIES[rng.integers(len(CITIES))]
        p.city, p.postcode = city, prefix + f"{rng.integers(0, 1000):03d}"
        p.address = (
            f"{city}市{ROADS[rng.integers(len(ROADS))]}{ROADS[rng.integers(len(ROADS))]}路{rng.integers(1, 999)}号"
        )
        handle = (p.given + "." + p.family).lower() if p.western else f"u{rng.integers(10**6, 10**8)}"
        p.email = f"{handle}{rng.integers(0, 100)}@{DOMAINS[rng.integers(len(DOMAINS))]}" if rng.random() < 0.7 else ""
        if rng.random() < 0.35 and not p.western:
            area = "110105" if rng.random() < 0.5 else "310104"
            first17 = area + p.birth.strftime("%Y%m%d") + f"{rng.integers(0, 1000):03d}"
            p.id_number = first17 + id_checksum(first17)
        else:
            p.id_number = ""
        people.append(p)
        # Hard negatives: a twin, or a family member sharing phone and address.
        roll = rng.random()
        if roll < 0.02 and len(people) < n:
            t = Person()
            for slot in Person.__slots__:
                setattr(t, slot, getattr(p, slot))
            t.gender = "F" if p.gender == "M" else "M"
            t.given = (
                WEST_FIRST[rng.integers(len(WEST_FIRST))]
                if p.western
                else "".join(GIVEN_CHARS[i] for i in rng.integers(len(GIVEN_CHARS), size=len(p.given)))
            )
            t.email = ""
            t.id_number = ""
            people.append(t)
        elif roll < 0.08 and len(people) < n:
            f = Person()
            for slot in Person.__slots__:
                setattr(f, slot, getattr(p, slot))
            f.given = (
                WEST_FIRST[rng.integers(len(WEST_FIRST))]
                if p.western
                else "".join(GIVEN_CHARS[i] for i in rng.integers(len(GIVEN_CHARS), size=2))
            )
            f.gender = "M" if rng.random() < 0.5 else "F"
            f.birth = p.birth + dt.timedelta(days=int(rng.integers(-12000, 12000)))
            f.email = ""
            f.id_number = ""
            people.append(f)
    return people


def _typo_name(p: Person, rng: np.random.Generator) -> tuple[str, str, str]:
    family, given = p.family, p.given
    roll = rng.random()
    if p.western:
        if roll < 0.25 and given in NICK:
            given = NICK[given]
        elif roll < 0.35:
            i = int(rng.integers(1, len(family) - 1))
            family = family[:i] + family[i + 1] + family[i] + family[i + 2 :]
        full = f"{given} {family}"
        if rng.random() < 0.15:
            full = f"{family} {given}"
        return full, "", ""
    if roll < 0.2:
        chars = list(family + given)
        i = [k for k, c in enumerate(chars) if c in SOUND_ALIKE]
        if i:
            k = i[int(rng.integers(len(i)))]
            chars[k] = SOUND_ALIKE[chars[k]]
        full = "".join(chars)
    elif roll < 0.3:
        full = "".join(TRADITIONAL.get(c, c) for c in family + given)
    elif roll < 0.36:
        full = given + family  # swapped
    elif roll < 0.4:
        full = family + " " + given
    else:
        full = family + given
    return full, "", ""


def make_records(people: list[Person], total: int, rng: np.random.Generator) -> list[tuple[int, dict]]:
    records: list[tuple[int, dict]] = []
    counts = np.ones(len(people), dtype=int)
    extra = total - len(people)
    if extra > 0:
        dup_people = rng.choice(len(people), size=extra, replace=True)
        np.add.at(counts, dup_people, 1)
    for pid, (p, c) in enumerate(zip(people, counts, strict=True)):
        for k in range(int(c)):
            clean = k == 0
            full, _f, _g = (
                (f"{p.given} {p.family}" if p.western else p.family + p.given, "", "") if clean else _typo_name(p, rng)
            )
            rec = {
                "full_name": full,
                "gender": p.gender,
                "birth_date": p.birth,
                "mobile": "+86" + p.mobile,
                "email": p.email,
                "id_number": p.id_number,
                "city": p.city,
                "postcode": p.postcode,
                "address": p.address,
            }
            if not clean:
                r = rng.random()
                if r < 0.08:
                    b = p.birth
                    if b.day <= 12 and b.day != b.month:
                        rec["birth_date"] = dt.date(b.year, b.day, b.month)
                elif r < 0.14:
                    b = p.birth
                    rec["birth_date"] = dt.date(b.year + int(rng.choice([-1, 1, -10, 10])), b.month, min(b.day, 28))
                m = p.mobile
                r = rng.random()
                if r < 0.06:
                    i = int(rng.integers(3, 10))
                    rec["mobile"] = "+86" + m[:i] + m[i + 1] + m[i] + m[i + 2 :]
                elif r < 0.12:
                    rec["mobile"] = (
                        "+86" + "1" + str(rng.integers(3, 10)) + f"{rng.integers(0, 10**9):09d}"
                    )  # new phone
                if p.email and rng.random() < 0.15:
                    local = p.email.split("@")[0]
                    rec["email"] = f"{local}@{DOMAINS[rng.integers(len(DOMAINS))]}"
                # Missing values: each field blank with some probability.
                for field, prob in (
                    ("birth_date", 0.15),
                    ("mobile", 0.15),
                    ("email", 0.3),
                    ("id_number", 0.4),
                    ("gender", 0.2),
                    ("address", 0.4),
                    ("postcode", 0.4),
                    ("city", 0.2),
                ):
                    if rng.random() < prob:
                        rec[field] = None if field == "birth_date" else ""
            records.append((pid, rec))
    order = rng.permutation(len(records))
    return [records[i] for i in order]


TRUTH_TABLE = "bench_dedup_truth"


def write(records: list[tuple[int, dict]], source_code: str) -> tuple[int, int]:
    import django

    django.setup()
    from django.db import connection, transaction

    from accounts.crypto import blind_index, encrypt
    from crmhub.models import Customer, Source, SourceRecord
    from dedup.names import fold, pinyin

    source, _ = Source.objects.get_or_create(code=source_code, defaults={"name": "Bench"})
    now = dt.datetime.now(dt.UTC)
    with transaction.atomic():
        start = (Customer.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        rec_start = (SourceRecord.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
        cust_cols = [
            "id",
            "full_name",
            "name_pinyin",
            "gender",
            "birth_date",
            "mobile",
            "email",
            "id_number",
            "id_number_hash",
            "city",
            "postcode",
            "address",
            "status",
            "version",
            "created_at",
            "updated_at",
            "family_name",
            "given_name",
            "phone",
            "member_no",
            "wechat_openid",
            "wechat_unionid",
            "company",
            "job_title",
            "province",
            "district",
            "country",
            "tags",
            "custom",
            "quality_flags",
            "team",
            "region",
        ]
        rec_cols = [
            "id",
            "source_id",
            "source_key",
            "customer_id",
            "raw",
            "normalized",
            "flags",
            "record_hash",
            "first_seen_at",
            "last_seen_at",
            "updated_at",
        ]
        cust_rows, rec_rows, truth = [], [], []
        for k, (pid, r) in enumerate(records):
            cid, rid = start + k, rec_start + k
            ident = r["id_number"]
            cust_rows.append(
                [
                    cid,
                    r["full_name"],
                    pinyin(r["full_name"]) or fold(r["full_name"]).replace(" ", ""),
                    r["gender"],
                    r["birth_date"],
                    r["mobile"],
                    r["email"],
                    encrypt(ident) if ident else "",
                    blind_index(ident),
                    r["city"],
                    r["postcode"],
                    r["address"],
                    "active",
                    1,
                    now,
                    now,
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "CN",
                    "[]",
                    "{}",
                    "{}",
                    "",
                    "",
                ]
            )
            key = f"B{cid:09d}"
            rec_rows.append([rid, source.pk, key, cid, "{}", "{}", "{}", "", now, now, now])
            truth.append((cid, key, pid))
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {TRUTH_TABLE} "
                "(customer_id bigint PRIMARY KEY, source_key varchar(32) NOT NULL, person integer NOT NULL)"
            )
            cursor.execute(f"DELETE FROM {TRUTH_TABLE}")
        if connection.vendor == "postgresql":
            _copy(connection, "crmhub_customer", cust_cols, cust_rows)
            _copy(connection, "crmhub_sourcerecord", rec_cols, rec_rows)
            _copy(connection, TRUTH_TABLE, ["customer_id", "source_key", "person"], truth)
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence('crmhub_customer','id'), "
                    "(SELECT max(id) FROM crmhub_customer))"
                )
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence('crmhub_sourcerecord','id'), "
                    "(SELECT max(id) FROM crmhub_sourcerecord))"
                )
                cursor.execute("ANALYZE crmhub_customer")
        else:
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO crmhub_customer ({','.join(cust_cols)}) VALUES ({','.join(['%s'] * len(cust_cols))})",
                    cust_rows,
                )
                cursor.executemany(
                    f"INSERT INTO crmhub_sourcerecord ({','.join(rec_cols)}) "
                    f"VALUES ({','.join(['%s'] * len(rec_cols))})",
                    rec_rows,
                )
                cursor.executemany(f"INSERT INTO {TRUTH_TABLE} VALUES (%s, %s, %s)", truth)
    return len(cust_rows), len({t[2] for t in truth})


def _copy(connection, table: str, columns: list[str], rows: list[list]) -> None:  # noqa: ANN001
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(_pg(v) for v in row) + "\n")
    buf.seek(0)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({','.join(columns)}) FROM STDIN") as copy:
            while chunk := buf.read(1 << 20):
                copy.write(chunk)


def _pg(value) -> str:  # noqa: ANN001
    if value is None:
        return r"\N"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def reset() -> None:
    import django

    django.setup()
    from django.db import connection

    tables = [
        "dedup_matchcandidate",
        "dedup_merge",
        "dedup_deduprunpart",
        "dedup_deduprun",
        "crmhub_interaction",
        "crmhub_historicalinteraction",
        "crmhub_sourcerecord",
        "crmhub_historicalsourcerecord",
        "crmhub_historicalcustomer",
        "crmhub_customer",
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            for t in tables:
                cursor.execute(f"DELETE FROM {t}")  # noqa: S608 - fixed table names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--dup-rate", type=float, default=0.4, help="extra records per person, on average")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--source", default="bench")
    parser.add_argument("--reset", action="store_true", help="delete customers, records and dedup rows first")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    people_n = int(round(args.records / (1 + args.dup_rate)))
    people = make_people(people_n, rng)
    records = make_records(people, args.records, rng)
    generated = time.monotonic() - started
    if args.reset:
        reset()
    written, persons = write(records, args.source)
    print(
        f"generated {len(records)} records of {persons} people in {generated:.1f} s; "
        f"written in {time.monotonic() - started - generated:.1f} s; truth in table {TRUTH_TABLE}"
    )


if __name__ == "__main__":
    main()
