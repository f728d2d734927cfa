"""The 360° view at scale (issue 6 item 9): search and the customer page over 1M customers on PostgreSQL.

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_view_bench
    /work/main/.venv/bin/python manage.py migrate
    /work/main/.venv/bin/python bench/workbench_bench.py generate --customers 1000000 --vips 500
    /work/main/.venv/bin/python bench/workbench_bench.py search --samples 200
    /work/main/.venv/bin/python bench/workbench_bench.py page --workers 4 --users 20 --seconds 60

``generate`` writes customers, one source record each (three for VIPs), a creation history row each,
interactions (VIPs 200-260 each across orders, tickets, visits and calls; every 8th customer a few)
and a handful of edits per VIP, streamed into COPY (no rows held in memory).
``search`` times ``crmhub.selectors.customer_search`` (first page of 50, ranked, as the list page and
the API ask for it) in this process for mobiles in other formats, emails, ID numbers and member
numbers, then fuzzy names (homophones, pinyin with a typo, partial pinyin, substrings), and prints
EXPLAIN of one query of each kind.
``page`` starts gunicorn on a loopback port, logs a support user in (the session cookie is scripted)
and loads VIP customer pages from ``--users`` concurrent clients, with wrk when it is installed
(``apt-get install wrk``), otherwise with a threaded Python client.
``pagecpu`` times the same page in this process (Django's test client, no HTTP): CPU ms, wall ms and
queries per page; ``--profile`` adds cProfile's cumulative top.

The generated ID numbers are encrypted with the FIELD_ENCRYPTION_KEY of the checkout that ran
``generate``: run the other commands with the same key (e.g. ``CRMHUB_VAR_DIR`` of that checkout's var/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
os.environ.setdefault("DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
SURNAME_WEIGHTS = [7.2, 7.0, 6.8, 5.4, 4.5] + [1.0] * (len(SURNAMES) - 5)
GIVEN = list(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉力国春海波宁燕琳欣怡子涵浩宇梓轩雨晨思佳一诺晓东"
)
WESTERN_FIRST = "James John Robert Michael William David Mary Patricia Jennifer Linda Susan Anna Peter".split()
WESTERN_LAST = "Smith Johnson Williams Brown Jones Miller Davis Wilson Taylor Clark Lewis Walker Hall Young".split()
CITIES = [
    ("北京市", "北京", "朝阳区"),
    ("上海市", "上海", "浦东新区"),
    ("广东省", "广州", "天河区"),
    ("广东省", "深圳", "南山区"),
    ("浙江省", "杭州", "西湖区"),
    ("江苏省", "南京", "鼓楼区"),
    ("四川省", "成都", "武侯区"),
    ("湖北省", "武汉", "洪山区"),
]
COMPANY_WORDS = list("星辰华兴远航恒信瑞丰博雅天成嘉禾鼎盛云帆金石")
COMPANY_KINDS = ["科技", "贸易", "文化传媒", "电子商务", "餐饮管理", "物流"]
KINDS = [("order", "订单"), ("ticket", "服务工单"), ("visit", "到店"), ("call", "来电")]
SOURCES = [("bench-erp", "ERP"), ("bench-shop", "网店"), ("bench-callcenter", "呼叫中心")]
VIP_TAG = "vip"
# Mobiles are a permutation of the customer number, so every one is distinct yet not sequential.
_MOBILE_MULT, _MOBILE_MOD = 7_919_113, 1_000_000_000


def mobile_of(i: int) -> str:
    return f"+8613{(i * _MOBILE_MULT + 12_345) % _MOBILE_MOD:09d}"


def id_number_of(i: int) -> str:
    # Distinct for every i below 20M: the birth date and the sequence number together.
    born = dt.date(1950, 1, 1) + dt.timedelta(days=i % 20_000)
    body = f"110105{born:%Y%m%d}{(i // 20_000) % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def has_id(i: int) -> bool:
    return i % 3 == 0


def member_of(i: int) -> str:
    return f"M{i:08d}" if i % 2 == 0 else ""


def _pg(value) -> str:  # noqa: ANN001
    if value is None:
        return r"\N"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False)
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def _copy(table: str, columns: list[str], rows) -> int:  # noqa: ANN001 - rows: an iterable of lists
    n = 0
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({','.join(columns)}) FROM STDIN") as copy:
            buf: list[str] = []
            for row in rows:
                buf.append("\t".join(_pg(v) for v in row) + "\n")
                n += 1
                if len(buf) >= 20_000:
                    copy.write("".join(buf))
                    buf.clear()
            if buf:
                copy.write("".join(buf))
    return n


def _reset() -> None:
    tables = [
        "dedup_matchcandidate",
        "dedup_merge",
        "dedup_deduprunpart",
        "dedup_deduprun",
        "crmhub_changeevent",
        "crmhub_interaction",
        "crmhub_historicalinteraction",
        "crmhub_sourcerecord",
        "crmhub_historicalsourcerecord",
        "crmhub_historicalcustomer",
        "crmhub_customer",
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def generate(customers: int, vips: int, seed: int) -> None:
    from accounts.crypto import blind_indexer, encrypt
    from crmhub.models import Source
    from imports.cleaning.names import name_pinyin

    rng = random.Random(seed)
    started = time.monotonic()
    _reset()
    sources = [Source.objects.get_or_create(code=c, defaults={"name": n})[0].pk for c, n in SOURCES]
    index = blind_indexer()
    now = dt.datetime.now(dt.UTC)
    vip_every = max(customers // max(vips, 1), 1)

    def is_vip(i: int) -> bool:
        return vips > 0 and i % vip_every == 1 and i // vip_every < vips

    def name_of(i: int) -> tuple[str, str, str]:
        r = random.Random(seed * 1_000_003 + i)
        if r.random() < 0.08:
            first, last = r.choice(WESTERN_FIRST), r.choice(WESTERN_LAST)
            return f"{first} {last}", last, first
        family = r.choices(SURNAMES, SURNAME_WEIGHTS)[0]
        given = "".join(r.choice(GIVEN) for _ in range(1 if r.random() < 0.3 else 2))
        return family + given, family, given

    customer_cols = (
        "id full_name family_name given_name name_pinyin gender birth_date mobile phone email id_number id_number_hash "
        "member_no wechat_openid wechat_unionid company job_title province city district address postcode country "
        "tags consent_marketing consent_sms consent_email custom status version quality_flags team region "
        "created_at updated_at"
    ).split()

    def customer_rows():  # noqa: ANN202
        for i in range(1, customers + 1):
            full, family, given = name_of(i)
            pinyin = name_pinyin(full)
            province, city, district = CITIES[i % len(CITIES)]
            ident = id_number_of(i) if has_id(i) else ""
            company = ""
            if i % 5 == 0:
                r = random.Random(i)
                company = f"{city}{r.choice(COMPANY_WORDS)}{r.choice(COMPANY_WORDS)}{r.choice(COMPANY_KINDS)}有限公司"
            tags = [VIP_TAG, "gold"] if is_vip(i) else (["newsletter"] if i % 7 == 0 else [])
            yield [
                i, full, family, given, pinyin, "MF"[i % 2], dt.date(1960, 1, 1) + dt.timedelta(days=i % 15_000),
                mobile_of(i), "", f"{pinyin[:12]}{i}@example.com", encrypt(ident) if ident else "", index(ident),
                member_of(i), "", "", company, "", province, city, district, f"{city}{district}建国路{i % 300}号",
                "100022", "CN", tags, None, None, None, {}, "active", 1, {}, "", "", now, now,
            ]  # fmt: skip

    with transaction.atomic():
        n = _copy("crmhub_customer", customer_cols, customer_rows())
        print(f"customers: {n} in {time.monotonic() - started:.0f} s", flush=True)

        history_cols = (
            "id change_channel change_ref full_name family_name given_name gender birth_date mobile phone email "
            "id_number member_no wechat_openid wechat_unionid company job_title province city district address "
            "postcode country tags custom status version quality_flags team region created_at history_date "
            "history_type"
        ).split()
        with connection.cursor() as cursor:
            cols = ", ".join(c for c in history_cols if c not in ("change_channel", "change_ref", "history_date",
                                                                   "history_type"))  # fmt: skip
            cursor.execute(
                f"INSERT INTO crmhub_historicalcustomer ({cols}, change_channel, change_ref, history_date, "
                f"history_type) SELECT {cols}, 'import', 'import_run:1', created_at, '+' FROM crmhub_customer"
            )
            # A few later changes of each VIP: a sync, an API update, a manual edit.
            for k, (channel, ref, field, value) in enumerate(
                [
                    ("connector", "import_run:2", "city", "上海"),
                    ("api", "import_run:3", "job_title", "采购经理"),
                    ("web", "", "company", "上海星辰科技有限公司"),
                    ("connector", "import_run:4", "job_title", "采购总监"),
                ]
            ):
                cursor.execute(
                    f"INSERT INTO crmhub_historicalcustomer ({cols}, change_channel, change_ref, history_date, "
                    f"history_type) SELECT {cols.replace(field, '%s')}, %s, %s, now() - interval '{30 - k} days', "
                    f"'~' FROM crmhub_customer WHERE tags @> '[\"vip\"]'",
                    [value, channel, ref],
                )
        print(f"history: done in {time.monotonic() - started:.0f} s", flush=True)

        record_cols = (
            "source_id source_key customer_id raw normalized flags record_hash first_seen_at last_seen_at updated_at"
        ).split()

        def record_rows():  # noqa: ANN202
            for i in range(1, customers + 1):
                full, _, _ = name_of(i)
                per = 3 if is_vip(i) else 1
                for s in range(per):
                    src = sources[(i + s) % len(sources)]
                    normalized = {"full_name": full, "mobile": mobile_of(i)}
                    flags = {"email": "the domain looks like a typo of qq.com"} if is_vip(i) and s == 2 else {}
                    yield [src, f"K{i:08d}", i, {"姓名": full}, normalized, flags, "", now, now, now]

        n = _copy("crmhub_sourcerecord", record_cols, record_rows())
        print(f"source records: {n} in {time.monotonic() - started:.0f} s", flush=True)

        interaction_cols = (
            "customer_id source_id kind external_id occurred_at title status amount currency details created_at"
        ).split()

        def interaction_rows():  # noqa: ANN202
            serial = 0
            for i in range(1, customers + 1):
                count = rng.randint(200, 260) if is_vip(i) else (rng.randint(1, 4) if i % 8 == 0 else 0)
                for _ in range(count):
                    serial += 1
                    kind, title = KINDS[serial % len(KINDS)]
                    amount = round(rng.uniform(20, 3000), 2) if kind == "order" else None
                    when = now - dt.timedelta(minutes=rng.randint(1, 3 * 365 * 24 * 60))
                    yield [i, sources[serial % len(sources)], kind, f"X{serial:09d}", when, f"{title} {serial}",
                           "done", amount, "CNY", {}, now]  # fmt: skip

        n = _copy("crmhub_interaction", interaction_cols, interaction_rows())
        print(f"interactions: {n} in {time.monotonic() - started:.0f} s", flush=True)
        with connection.cursor() as cursor:
            for table in ("crmhub_customer", "crmhub_sourcerecord", "crmhub_interaction", "crmhub_historicalcustomer"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', "
                    f"'{'history_id' if 'historical' in table else 'id'}'), (SELECT max("
                    f"{'history_id' if 'historical' in table else 'id'}) FROM {table}))"
                )
    with connection.cursor() as cursor:
        for table in ("crmhub_customer", "crmhub_sourcerecord", "crmhub_interaction", "crmhub_historicalcustomer"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"generated {customers} customers ({vips} VIPs) in {time.monotonic() - started:.0f} s")


#
# Search
#


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _bench_user(role: str = "support"):  # noqa: ANN202
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user, created = get_user_model().objects.get_or_create(username=f"bench_{role}")
    if created or not user.has_usable_password():
        user.set_password(f"bench-{role}-pw")
        user.save()
    user.groups.add(Group.objects.get(name=role))
    return get_user_model().objects.get(pk=user.pk)


def search(samples: int, seed: int, role: str) -> None:
    from django.db import reset_queries

    from crmhub import selectors
    from crmhub.models import Customer

    rng = random.Random(seed)
    total = Customer.objects.order_by("-id").values_list("id", flat=True).first() or 0
    # A steward sees names in full, so every kind of name search is open to them (a support user
    # sees names masked and may search them by the exact name only).
    user = _bench_user(role)
    picks = [rng.randint(1, total) for _ in range(samples)]
    names = dict(Customer.objects.filter(pk__in=picks).values_list("pk", "full_name"))
    pinyins = dict(Customer.objects.filter(pk__in=picks).values_list("pk", "name_pinyin"))

    def formatted_mobile(i: int) -> str:
        digits = mobile_of(i)[3:]
        return rng.choice([f"{digits[:3]}-{digits[3:7]}-{digits[7:]}", f"+86 {digits}", f"0086{digits}",
                           f"{digits[:3]} {digits[3:7]} {digits[7:]}"])  # fmt: skip

    def homophone(name: str) -> str:
        swaps = {"张": "章", "王": "汪", "李": "理", "伟": "玮", "芳": "方", "静": "晶", "明": "铭", "洋": "阳"}
        return "".join(swaps.get(ch, ch) for ch in name)

    def typo(pinyin: str) -> str:
        if len(pinyin) < 5:
            return pinyin
        k = rng.randint(1, len(pinyin) - 2)
        return pinyin[:k] + pinyin[k + 1] + pinyin[k] + pinyin[k + 2 :]

    kinds = {
        "mobile (other formats)": [formatted_mobile(i) for i in picks],
        "email": [Customer.objects.get(pk=i).email for i in picks[:samples]],
        "ID number": [id_number_of(i - i % 3 or 3) for i in picks],
        "member number": [member_of(i - i % 2 or 2) for i in picks],
        "name, characters (exact)": [names[i] for i in picks if i in names],
        "name, homophone characters (章伟 for 张伟)": [homophone(names[i]) for i in picks if i in names],
        "name, pinyin with a typo": [typo(pinyins[i]) for i in picks if i in pinyins],
        "name, partial pinyin (prefix)": [pinyins[i][: max(4, len(pinyins[i]) - 2)] for i in picks if i in pinyins],
        "company, part": ["星辰科技", "上海恒信", "嘉禾贸易", "博雅文化"] * (samples // 4),
    }
    print(f"customer_search, first page of 50 ranked, {role} user, {samples} queries of each kind")
    print("| query kind | p50 ms | p95 ms | max ms | hits (mean) |")
    print("|---|---|---|---|---|")
    for kind, queries in kinds.items():
        times, hits = [], []
        for q in queries:
            started = time.perf_counter()
            rows = list(selectors.customer_search(user=user, q=q)[:50])
            times.append((time.perf_counter() - started) * 1000)
            hits.append(len(rows))
            reset_queries()
        print(
            f"| {kind} | {statistics.median(times):.1f} | {_percentile(times, 95):.1f} | {max(times):.1f} | "
            f"{statistics.mean(hits):.1f} |",
            flush=True,
        )
    print("\nEXPLAIN ANALYZE of every step of one search of each shape:")
    qs = selectors.customer_list(user=user)
    for label, q in [
        ("mobile", formatted_mobile(picks[0])),
        ("ID number", id_number_of(3)),
        ("name", names[picks[0]]),
        ("homophone", homophone(names[picks[0]])),
        ("pinyin typo", typo(pinyins[picks[0]])),
        ("company", "星辰科技"),
    ]:
        print(f"== {label}: {q}")
        for rank, condition in selectors._search_steps(user, q):
            _explain(f"step rank {rank}", qs.filter(condition).values_list("pk", flat=True).order_by()[:50])


def _explain(label: str, qs) -> None:  # noqa: ANN001
    from django.core.exceptions import EmptyResultSet

    try:
        sql, params = qs.query.sql_with_params()
    except EmptyResultSet:
        print(f"-- {label}: nothing to look up")
        return
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        rows = [r[0] for r in cursor.fetchall()]
    print(f"-- {label}\n" + "\n".join(r if len(r) < 200 else r[:200] + "…" for r in rows))


#
# The customer page under load
#


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _login_cookie(port: int) -> str:
    """Log in through the real login form (CSRF token and all) and return the Cookie header."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login/")
    response = conn.getresponse()
    body = response.read().decode()
    csrf_cookie = re.search(r"csrftoken=([^;]+)", response.getheader("Set-Cookie") or "").group(1)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1)
    form = f"csrfmiddlewaretoken={token}&username=bench_support&password=bench-support-pw"
    conn.request(
        "POST",
        "/login/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf_cookie}",
            "Referer": f"http://127.0.0.1:{port}/login/",
        },
    )
    response = conn.getresponse()
    response.read()
    session = re.search(r"sessionid=([^;]+)", response.getheader("Set-Cookie") or "")
    if response.status != 302 or not session:
        raise SystemExit(f"login failed: {response.status}")
    return f"csrftoken={csrf_cookie}; sessionid={session.group(1)}"


def _python_load(
    port: int, cookie: str, paths: list[str], users: int, seconds: float, think_ms: int = 0
) -> list[float]:
    import http.client

    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        n = k
        mine = []
        while time.monotonic() < deadline:
            path = paths[n % len(paths)]
            n += users
            started = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            mine.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise SystemExit(f"{path}: HTTP {response.status}")
            if think_ms:
                time.sleep(random.uniform(think_ms / 2, think_ms * 1.5) / 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def page(workers: int, threads: int, users: int, seconds: float, think_ms: int) -> None:
    from crmhub.models import Customer, Interaction

    _bench_user()
    vips = list(Customer.objects.filter(tags__contains=[VIP_TAG]).values_list("pk", flat=True)[:200])
    counts = [Interaction.objects.filter(customer_id=pk).count() for pk in vips[:5]]
    paths = [f"/customers/{pk}/" for pk in vips]
    port = _free_port()
    env = dict(os.environ, DEBUG="0", DB_CONN_MAX_AGE="600")
    command = [
        sys.executable, "-m", "gunicorn", "crmhub.wsgi", "-b", f"127.0.0.1:{port}", "-w", str(workers),
        "--threads", str(threads), "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.3)
        cookie = _login_cookie(port)
        # Warm every worker (imports, template compilation, connections) before measuring.
        _python_load(port, cookie, paths, users, 5)
        print(f"gunicorn: {workers} workers x {threads} threads; {users} concurrent users, think time "
              f"{think_ms // 2}-{think_ms * 3 // 2} ms; {len(paths)} VIP pages "
              f"(interactions of the first: {counts}); {seconds:.0f} s")  # fmt: skip
        # One user alone first: the page's own latency, without queueing behind other users.
        alone = _python_load(port, cookie, paths, 1, 15)
        print(
            f"one user alone, back to back: {len(alone)} pages, p50 {statistics.median(alone):.0f} ms, "
            f"p95 {_percentile(alone, 95):.0f} ms"
        )
        print("load average before:", os.getloadavg())
        wrk = shutil.which("wrk")
        if wrk:
            script = Path(tempfile.mkdtemp()) / "pages.lua"
            script.write_text(
                "paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n"
                "n = 0\n"
                + (
                    f"delay = function()\n  return math.random({think_ms // 2}, {think_ms * 3 // 2})\nend\n"
                    if think_ms
                    else ""
                )
                + "request = function()\n  n = n + 1\n"
                f'  return wrk.format("GET", paths[(n % #paths) + 1], {{["Cookie"] = "{cookie}"}})\nend\n'
                # wrk's --latency table has no p95: print it (and the non-2xx count) at the end.
                "done = function(summary, latency, requests)\n"
                '  io.write(string.format("p95 %.1f ms; non-2xx or errors %d\\n", latency:percentile(95) / 1000,\n'
                "    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))\n"
                "end\n"
            )
            result = subprocess.run(
                [
                    wrk,
                    "-t",
                    "2",
                    "-c",
                    str(users),
                    "-d",
                    f"{int(seconds)}s",
                    "--latency",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{port}",
                ],  # fmt: skip
                capture_output=True,
                text=True,
                check=True,
            )
            print(result.stdout)
        else:
            latencies = _python_load(port, cookie, paths, users, seconds, think_ms)
            print(
                f"requests {len(latencies)} ({len(latencies) / seconds:.0f}/s); p50 {statistics.median(latencies):.0f} "
                f"ms, p95 {_percentile(latencies, 95):.0f} ms, p99 {_percentile(latencies, 99):.0f} ms"
            )
        print("load average after:", os.getloadavg())
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def page_cpu(pages: int, role: str, profile: bool) -> None:
    """CPU and wall time of the customer page in this process (Django's test client through the
    whole middleware stack, no HTTP): a load-independent figure for the cost of one page."""
    import cProfile
    import pstats

    from django.db import reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from crmhub.models import Customer

    user = _bench_user(role)
    vips = list(Customer.objects.filter(tags__contains=[VIP_TAG]).values_list("pk", flat=True)[:pages])
    client = Client()
    client.force_login(user)
    for pk in vips[:5]:  # warm up: imports, templates, the connection
        assert client.get(f"/customers/{pk}/").status_code == 200
    cpu, wall, queries = [], [], []
    profiler = cProfile.Profile() if profile else None
    for pk in vips:
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            c0, w0 = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            response = client.get(f"/customers/{pk}/")
            if profiler:
                profiler.disable()
            cpu.append((time.process_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
        assert response.status_code == 200, response.status_code
        queries.append(len(captured))
    print(
        f"{len(vips)} VIP pages as {role}: CPU ms per page p50 {statistics.median(cpu):.1f}, mean "
        f"{statistics.mean(cpu):.1f}, p95 {_percentile(cpu, 95):.1f}; wall p50 {statistics.median(wall):.1f} ms; "
        f"queries per page {min(queries)}-{max(queries)}; load average {os.getloadavg()}"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--customers", type=int, default=1_000_000)
    g.add_argument("--vips", type=int, default=500)
    g.add_argument("--seed", type=int, default=2026)
    s = sub.add_parser("search")
    s.add_argument("--samples", type=int, default=200)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--role", default="steward")
    p = sub.add_parser("page")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--think-ms", type=int, default=0, help="each user pauses 0.5-1.5x this between pages")
    c = sub.add_parser("pagecpu")
    c.add_argument("--pages", type=int, default=40)
    c.add_argument("--role", default="support")
    c.add_argument("--profile", action="store_true", help="print cProfile's cumulative top")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("this benchmark runs on PostgreSQL: set DATABASE_URL")
    if args.command == "generate":
        generate(args.customers, args.vips, args.seed)
    elif args.command == "search":
        search(args.samples, args.seed, args.role)
    elif args.command == "pagecpu":
        page_cpu(args.pages, args.role, args.profile)
    else:
        page(args.workers, args.threads, args.users, args.seconds, args.think_ms)


if __name__ == "__main__":
    main()
