"""Import benchmark on PostgreSQL: the full pipeline against a hand-written set-based load
and the floor of a plain COPY, measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/crmhub_bench \
      /work/main/.venv/bin/python bench/import_bench.py /tmp/customers_1m.csv

Each measurement starts from empty tables. Prints a table (and the peak RSS of this process,
which is the pipeline's: the other two measurements hold nothing in memory). Besides wall time,
each measurement's CPU seconds are given for this process (CPU py: the pipeline's Python, every
thread) and for its PostgreSQL backends (CPU db: its own connection's plus, with write lanes
(``CRMHUB_IMPORT_WRITE_LANES``), every lane's: ``bench/lane_cpu.py``): on a shared machine wall
time includes waiting for a core, CPU time does not.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmhub.settings")
# Measure as deployed: DEBUG would keep every SQL statement (with its parameters) in memory.
os.environ.setdefault("DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench.lane_cpu import install, lane_cpu  # noqa: E402
from bench.pg_settings import server_settings  # noqa: E402

install()

TABLES = [
    "imports_importrunissue",
    "imports_importrunchange",
    "imports_importrun",
    "crmhub_historicalsourcerecord",
    "crmhub_sourcerecord",
    "crmhub_historicalcustomer",
    "crmhub_interaction",
    "crmhub_customer",
    # The pipeline's "created" events: emptied too, so that every run starts from the same tables.
    "crmhub_changeevent",
]


def backend_cpu() -> float:
    """CPU seconds (user + system) of this connection's PostgreSQL backend so far (same machine),
    and of the write lanes' backends that ended so far."""
    with connection.cursor() as c:
        c.execute("SELECT pg_backend_pid()")
        pid = c.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") + lane_cpu()


def measured(fn, *args):  # noqa: ANN001, ANN201
    """``fn(*args)`` with the CPU seconds it cost this process and its database backend."""
    own, db = time.process_time(), backend_cpu()
    result = fn(*args)
    return result, time.process_time() - own, backend_cpu() - db


def reset() -> None:
    with connection.cursor() as c:
        c.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        c.execute("DROP TABLE IF EXISTS bench_bare, bench_stage")
    connection.commit() if not connection.get_autocommit() else None


def pipeline(path: str) -> tuple[float, int, dict]:
    from crmhub.services import source_get_or_create
    from imports.services import file_run_from_path, import_run_execute, mapping_suggest

    source, _ = source_get_or_create(code="bench")
    started = time.perf_counter()

    def plan_for(layout):  # noqa: ANN001, ANN202
        return mapping_suggest(headers=layout.headers)

    run = file_run_from_path(path=path, source=source, plan_for=plan_for, enqueue=False)
    run = import_run_execute(run_id=run.pk)
    return time.perf_counter() - started, run.rows_done, run.summary()


def set_based(path: str, *, history: bool = True, run_id: int | None = None) -> tuple[float, int]:
    """COPY the rows into a staging table, then INSERT … SELECT into the same tables and
    indexes (customers, source records, both history tables), mobiles normalized in SQL.

    ``history=False`` leaves out both history tables; with ``run_id`` the load also writes what
    the pipeline writes besides (bench/import_floor.py): a "created" change-feed event per customer
    and the run's "created" rollback log."""
    started = time.perf_counter()
    with connection.cursor() as c:
        c.execute(
            "INSERT INTO crmhub_source (code, name, kind, trust_rank, description, is_active, created_at, updated_at) "
            "VALUES ('setbased', 'setbased', 'file', 50, '', true, now(), now()) ON CONFLICT (code) DO NOTHING "
            "RETURNING id"
        )
        row = c.fetchone()
        if row is None:
            c.execute("SELECT id FROM crmhub_source WHERE code = 'setbased'")
            row = c.fetchone()
        source_id = row[0]
        c.execute(
            "CREATE UNLOGGED TABLE bench_stage (key text, name text, mobile text, email text, gender text, "
            "birth text, idno text, address text, level text, note text)"
        )
        with (
            open(path, encoding="utf-8") as fh,
            c.copy(
                "COPY bench_stage FROM STDIN WITH (FORMAT csv, HEADER true, "
                "FORCE_NOT_NULL (key, name, mobile, email, gender, birth, idno, address, level, note))"
            ) as cp,
        ):
            while block := fh.read(1 << 20):
                cp.write(block)
        c.execute("ALTER TABLE bench_stage ADD COLUMN cid bigint")
        c.execute("UPDATE bench_stage SET cid = nextval(pg_get_serial_sequence('crmhub_customer', 'id'))")
        c.execute("""
            INSERT INTO crmhub_customer (id, full_name, family_name, given_name, name_pinyin, gender, birth_date,
              mobile, phone, email, id_number, id_number_hash, member_no, wechat_openid, wechat_unionid, company,
              job_title,
              province, city, district, address, postcode, country, tags, custom, status, version, quality_flags,
              team, region, created_at, updated_at)
            SELECT cid, name, left(name, 1), substr(name, 2), '',
              CASE WHEN gender IN ('男','M','1') THEN 'M' ELSE 'F' END, NULL,
              '+86' || right(regexp_replace(mobile, '[^0-9]', '', 'g'), 11), '', lower(email), idno, md5(idno),
              '', '', '', '', '', '', '', '', address, '', 'CN', '[]', '{}', 'active', 1, '{}', '', '', now(), now()
            FROM bench_stage""")
        c.execute(
            """
            INSERT INTO crmhub_sourcerecord (source_id, source_key, customer_id, raw, normalized, flags, record_hash,
              first_seen_at, last_seen_at, updated_at)
            SELECT %s, key, cid, jsonb_build_object('客户编号', key, '姓名', name, '手机号', mobile, '邮箱', email,
              '性别', gender, '出生日期', birth, '身份证号', idno, '地址', address, '会员等级', level),
              jsonb_build_object('full_name', name,
              'mobile', '+86' || right(regexp_replace(mobile, '[^0-9]', '', 'g'), 11), 'email', lower(email),
              'address', address),
              '{}', md5(key || name || mobile), now(), now(), now()
            FROM bench_stage
            ON CONFLICT (source_id, source_key) DO UPDATE SET raw = EXCLUDED.raw""",
            [source_id],
        )
        if history:
            write_history(c, source_id)
        if run_id is not None:
            write_events_and_rollback_log(c, source_id, run_id)
        c.execute("SELECT count(*) FROM bench_stage")
        rows = c.fetchone()[0]
        c.execute("DROP TABLE bench_stage")
    return time.perf_counter() - started, rows


def write_history(c, source_id: int) -> None:  # noqa: ANN001
    """The "+" history rows of the set-based load's source records and customers."""
    c.execute(
        """
        INSERT INTO crmhub_historicalsourcerecord (id, source_key, raw, normalized, flags, record_hash,
          first_seen_at, source_updated_at, source_id, customer_id, history_date, history_type, history_user_id,
          change_channel, change_ref)
        SELECT id, source_key, raw, normalized, flags, record_hash, first_seen_at, source_updated_at, source_id,
          customer_id, now(), '+', NULL, 'import', 'bench' FROM crmhub_sourcerecord WHERE source_id = %s""",
        [source_id],
    )
    c.execute("""
        INSERT INTO crmhub_historicalcustomer (id, full_name, family_name, given_name, gender, birth_date, mobile,
          phone, email, id_number, member_no, wechat_openid, wechat_unionid, company, job_title, province, city,
          district, address, postcode, country, tags, consent_marketing, consent_sms, consent_email, custom, status,
          version, quality_flags, team, region, created_at, merged_into_id, owner_id, history_date, history_type,
          history_user_id, change_channel, change_ref)
        SELECT c.id, c.full_name, c.family_name, c.given_name, c.gender, c.birth_date, c.mobile, c.phone,
          c.email, c.id_number, c.member_no, c.wechat_openid, c.wechat_unionid, c.company, c.job_title,
          c.province, c.city, c.district, c.address, c.postcode, c.country, c.tags, c.consent_marketing,
          c.consent_sms, c.consent_email, c.custom, c.status, c.version, c.quality_flags, c.team, c.region,
          c.created_at, c.merged_into_id, c.owner_id, now(), '+', NULL, 'import', 'bench'
        FROM crmhub_customer c JOIN bench_stage s ON s.cid = c.id""")


def write_events_and_rollback_log(c, source_id: int, run_id: int) -> None:  # noqa: ANN001
    """A "created" change-feed event per new customer (its values as data) and the run's "created"
    rollback log, one row per source record, as the pipeline writes them."""
    c.execute("""
        INSERT INTO crmhub_changeevent (event_id, event_type, customer_id, changed_fields, data, channel, ref,
          occurred_at)
        SELECT gen_random_uuid(), 'created', c.id, '[]',
          jsonb_strip_nulls(jsonb_build_object('full_name', c.full_name, 'family_name', c.family_name,
            'given_name', c.given_name, 'gender', c.gender, 'mobile', c.mobile, 'email', c.email,
            'id_number', c.id_number, 'address', c.address, 'country', c.country)),
          'import', 'bench', now()
        FROM crmhub_customer c JOIN bench_stage s ON s.cid = c.id""")
    c.execute(
        """
        INSERT INTO imports_importrunchange (run_id, action, source_record_id, customer_id)
        SELECT %s, 'created', r.id, r.customer_id FROM crmhub_sourcerecord r WHERE r.source_id = %s""",
        [run_id, source_id],
    )


def bare_copy(path: str) -> tuple[float, int]:
    started = time.perf_counter()
    with connection.cursor() as c:
        c.execute(
            "CREATE TABLE bench_bare (key text, name text, mobile text, email text, gender text, birth text, "
            "idno text, address text, level text, note text)"
        )
        with (
            open(path, encoding="utf-8") as fh,
            c.copy(
                "COPY bench_bare FROM STDIN WITH (FORMAT csv, HEADER true, "
                "FORCE_NOT_NULL (key, name, mobile, email, gender, birth, idno, address, level, note))"
            ) as cp,
        ):
            while block := fh.read(1 << 20):
                cp.write(block)
        c.execute("SELECT count(*) FROM bench_bare")
        rows = c.fetchone()[0]
        c.execute("DROP TABLE bench_bare")
    return time.perf_counter() - started, rows


def main() -> None:
    path = sys.argv[1]
    if connection.vendor != "postgresql":
        sys.exit("Run the benchmark on PostgreSQL: set DATABASE_URL.")
    print(server_settings(), flush=True)
    call_command("migrate", verbosity=0)
    reset()
    (p_seconds, p_rows, summary), p_cpu, p_db = measured(pipeline, path)
    print(f"pipeline: {p_rows} rows in {p_seconds:.1f} s", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    reset()
    (s_seconds, s_rows), s_cpu, s_db = measured(set_based, path)
    reset()
    (b_seconds, b_rows), b_cpu, b_db = measured(bare_copy, path)
    print(f"pipeline summary: {summary}")
    print(f"{'measurement':<44} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'CPU py':>7} {'CPU db':>7}")
    for name, secs, rows, cpu, db in [
        ("crmhub import pipeline (end to end)", p_seconds, p_rows, p_cpu, p_db),
        ("hand-written COPY + INSERT … SELECT", s_seconds, s_rows, s_cpu, s_db),
        ("plain COPY into a bare table (floor)", b_seconds, b_rows, b_cpu, b_db),
    ]:
        print(f"{name:<44} {rows:>9} {secs:>8.1f} {rows / secs:>9.0f} {cpu:>7.1f} {db:>7.1f}")
    print(f"pipeline / set-based time ratio: {p_seconds / s_seconds:.2f}x; peak RSS of the pipeline: {peak_mb:.0f} MB")
    print(f"write lanes: {settings.CRMHUB_IMPORT_WRITE_LANES}; load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
