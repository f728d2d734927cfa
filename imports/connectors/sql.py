"""SQL database connector: a table or one SELECT, read page by page past a saved cursor.

Safety: the query must be a single SELECT (parsed with sqlglot, plus a deny-list of
locking clauses, SELECT … INTO and dangerous functions); it runs in a read-only
transaction with a statement timeout, over a connection with connect/read timeouts.

Keyset pagination: ``ORDER BY cursor, key…`` and ``WHERE (cursor, key…) > (last…)``
written out as ORs, which both PostgreSQL and MariaDB turn into an index range.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlglot
from pymysql.converters import convert_date, convert_datetime, convert_timedelta
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from imports.connectors.base import (
    Connector,
    ConnectorError,
    Page,
    Preview,
    cell_text,
    column_text,
    cursor_value_dump,
    cursor_value_load,
    register_connector,
)

SUPPORTED = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
CONNECT_TIMEOUT = 10
STATEMENT_TIMEOUT = 120
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
DENIED_FUNCTIONS = {
    # waiting, locking, and server-side file or process access
    "sleep",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "benchmark",
    "get_lock",
    "release_lock",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "load_file",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "lo_import",
    "lo_export",
    "lo_get",
    "lo_put",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "set_config",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "query_to_xml",
    "query_to_json",
    "nextval",
    "setval",
    "sys_exec",
    "sys_eval",
    "xp_cmdshell",
    "openrowset",
    "opendatasource",
    "pg_logical_emit_message",
    "txid_current",
    "pg_current_xact_id",
    "pg_notify",
    "master_pos_wait",
    "source_pos_wait",
}
DENIED_NODES = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Set,
    exp.Merge,
    exp.Into,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Use,
    exp.Grant,
    exp.TruncateTable,
    exp.Copy,
    exp.LoadData,
)


def _backend(url: str) -> str:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in SUPPORTED:
        raise ConnectorError(f"unsupported database {scheme!r}: use postgresql://, mysql:// or mariadb://")
    return scheme


def validate_select(sql: str, *, dialect: str) -> str:
    """``sql`` if it is a single, plain SELECT; raises ConnectorError saying what is refused."""
    text = sql.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise ConnectorError("the query is empty")
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(text)
    except (TokenError, ValueError) as exc:
        raise ConnectorError(f"the query cannot be read: {str(exc)[:200]}") from None
    if any(t.comments for t in tokens):
        raise ConnectorError("comments are not allowed in the query (they can hide statements)")
    if any(t.token_type == sqlglot.TokenType.SEMICOLON for t in tokens):
        raise ConnectorError("only one statement is allowed: remove the ';' and what follows")
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        raise ConnectorError(f"the query is not valid SQL: {str(exc).splitlines()[0][:200]}") from None
    if len(statements) != 1:
        raise ConnectorError("only one statement is allowed")
    tree = statements[0]
    if not isinstance(tree, (exp.Select, exp.Union, exp.Intersect, exp.Except)):
        raise ConnectorError(f"only SELECT is allowed, not {tree.key.upper()}")
    for node in tree.walk():
        if isinstance(node, DENIED_NODES):
            raise ConnectorError(f"{node.key.upper()} is not allowed in a read-only query")
        if isinstance(node, exp.Select) and (node.args.get("locks") or node.args.get("into")):
            raise ConnectorError("SELECT … FOR UPDATE/SHARE and SELECT … INTO are not allowed")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in DENIED_FUNCTIONS:
                raise ConnectorError(f"the function {name}() is not allowed in a connector query")
    return text


def mysql_driver() -> str:
    """The driver for a MariaDB/MySQL URL that names none: mysqlclient (C, module MySQLdb) when it
    is installed (it needs libmariadb to build), else PyMySQL (pure Python, always installed).
    Reading a row costs mysqlclient about a quarter of PyMySQL's CPU."""
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        return "pymysql"
    return "mysqldb"


def _mysql_datetime(text: str) -> Any:
    """A DATETIME/TIMESTAMP value as PyMySQL gives it (illegal dates stay text), its common shape
    parsed in C."""
    if len(text) >= 19 and text[10] == " ":
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            pass
    return convert_datetime(text)


def _mysql_date(text: str) -> Any:
    if len(text) == 10:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    return convert_date(text)


# MariaDB type codes (MySQLdb.constants.FIELD_TYPE) of the temporal columns mysqlclient hands
# over as text, to be parsed a column at a time (``_temporal_column``).
MYSQL_DATE, MYSQL_TIMESTAMP, MYSQL_DATETIME = 10, 7, 12
_PARSE_ONE = {MYSQL_DATE: _mysql_date, MYSQL_TIMESTAMP: _mysql_datetime, MYSQL_DATETIME: _mysql_datetime}


def _mysqldb_conversions() -> dict:
    """mysqlclient's conversions, PyMySQL's values for dates and times: the same rows give the
    same cells, and the same cursor, whichever driver reads them (mysqlclient would give None for
    a zero date, PyMySQL its text). DATE/DATETIME/TIMESTAMP stay text here (``str`` is a C call,
    not a Python function per value) and are parsed a column at a time by ``_temporal_column``."""
    from MySQLdb.constants import FIELD_TYPE
    from MySQLdb.converters import conversions

    return {
        **conversions,
        FIELD_TYPE.DATETIME: str,
        FIELD_TYPE.TIMESTAMP: str,
        FIELD_TYPE.DATE: str,
        FIELD_TYPE.TIME: convert_timedelta,
    }


def _temporal_column(texts: Sequence[str | None], type_code: int) -> list[Any]:
    """PyMySQL's values for a column of DATE/DATETIME/TIMESTAMP texts: one C-level pass of
    ``fromisoformat`` when every value has the shape MariaDB sends valid dates in, else (zero or
    invalid dates, which PyMySQL keeps as text) value by value as PyMySQL parses them."""
    date = type_code == MYSQL_DATE
    present = [t for t in texts if t is not None] if None in texts else texts
    lengths = set(map(len, present))
    if lengths and (lengths == {10} if date else min(lengths) >= 19):
        try:
            parsed = iter(map(dt.date.fromisoformat if date else dt.datetime.fromisoformat, present))
            return list(parsed) if present is texts else [None if t is None else next(parsed) for t in texts]
        except ValueError:
            pass
    one = _PARSE_ONE[type_code]
    return [None if t is None else one(t) for t in texts]


def _page_size(config: dict[str, Any]) -> int:
    from imports.constants import CHUNK_ROWS

    size = int(config.get("page_size") or CHUNK_ROWS)
    if not 1 <= size <= 200_000:
        raise ConnectorError("page size must be between 1 and 200000")
    return size


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as its scheme only
        return url.split(":", 1)[0] + "://***"


@register_connector("sql")
class SqlConnector(Connector):
    """A SQLAlchemy URL, a table or one SELECT, key column(s) and an incremental cursor column."""

    label = "SQL database"
    secret_label = "SQLAlchemy URL"

    @classmethod
    def clean_config(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        backend = _backend(secret)
        table = (config.get("table") or "").strip()
        query = (config.get("query") or "").strip()
        if bool(table) == bool(query):
            raise ConnectorError("give either a table name or one SELECT statement")
        if table and not all(IDENTIFIER.match(part) for part in table.split(".")):
            raise ConnectorError("the table name may hold letters, digits and _ (schema.table allowed)")
        if query:
            query = validate_select(query, dialect=SUPPORTED[backend])
        keys = [k.strip() for k in (config.get("key_columns") or []) if k and k.strip()]
        cursor = (config.get("cursor_column") or "").strip()
        if not keys:
            raise ConnectorError("name the source-key column(s)")
        if not cursor:
            raise ConnectorError("name the incremental cursor column (an updated_at or an increasing id)")
        for name in [*keys, cursor]:
            if not IDENTIFIER.match(name):
                raise ConnectorError(f"column name {name!r} may hold letters, digits and _ only")
        return {
            "table": table,
            "query": query,
            "key_columns": keys,
            "cursor_column": cursor,
            "statement_timeout": int(config.get("statement_timeout") or STATEMENT_TIMEOUT),
            "connect_timeout": int(config.get("connect_timeout") or CONNECT_TIMEOUT),
            "page_size": _page_size(config),
        }

    def masked_secret(self) -> str:
        return mask_url(self.secret)

    #
    # Connections
    #

    def _engine(self):  # noqa: ANN202
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url
        from sqlalchemy.pool import NullPool

        backend = _backend(self.secret)
        url = make_url(self.secret)
        timeout = self.config["connect_timeout"]
        long_read = self.config["statement_timeout"] + timeout
        if backend == "postgresql":
            if url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            args: dict[str, Any] = {"connect_timeout": timeout}
        else:
            if "+" not in url.drivername:
                url = url.set(drivername=f"{url.drivername}+{mysql_driver()}")
            if url.get_driver_name() == "mysqldb":
                # libmariadb's connect timeout covers the handshake too; reads may last the statement.
                args = {
                    "connect_timeout": timeout,
                    "read_timeout": long_read,
                    "write_timeout": timeout,
                    "conv": _mysqldb_conversions(),
                }
                if "charset" not in url.query:
                    args["charset"] = "utf8mb4"  # PyMySQL's default; mysqlclient's is the server's
            else:
                # PyMySQL's connect_timeout covers only the TCP connect: the handshake reads under
                # read_timeout, so that starts short (a server that accepts but never answers)
                # and is lengthened past the statement timeout once connected.
                args = {"connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout}
        engine = create_engine(url, poolclass=NullPool, connect_args=args)
        if backend != "postgresql" and url.get_driver_name() == "pymysql":
            from sqlalchemy import event

            @event.listens_for(engine, "connect")
            def _lengthen_read_timeout(dbapi_connection, _record) -> None:  # noqa: ANN001
                dbapi_connection._read_timeout = long_read

        return engine

    @contextmanager
    def _reader(self) -> Iterator[Callable[[str, dict[str, Any]], tuple[list[str], list[list[Any]], int]]]:
        """A function reading one query in its own read-only transaction (rolled back once read),
        over one connection kept for the whole sync: a page costs its query, not a new connection.
        It returns the column names, the values column by column, and the number of rows."""
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        engine = self._engine()
        postgres = engine.dialect.name == "postgresql"
        text_dates = engine.dialect.driver == "mysqldb"  # see _mysqldb_conversions
        seconds = self.config["statement_timeout"]

        def read_on(conn, sql: str, params: dict[str, Any]) -> tuple[list[str], list[list[Any]], int]:  # noqa: ANN001
            try:
                if postgres:
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")
                    conn.exec_driver_sql("SET LOCAL lock_timeout = 5000")
                else:
                    conn.exec_driver_sql("START TRANSACTION READ ONLY")
                result = conn.execute(text(sql), params)
                columns = list(result.keys())
                types = [d[1] for d in result.cursor.description]
                rows = result.cursor.fetchall()  # the driver's tuples: no Row object per row
                result.close()
                conn.rollback()
            except sa_exc.DBAPIError as exc:
                raise ConnectorError(self._explain(exc)) from None
            values: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
            if text_dates:
                for i, type_code in enumerate(types):
                    if type_code in _PARSE_ONE:
                        values[i] = _temporal_column(values[i], type_code)
            return columns, values, len(rows)

        try:
            with engine.connect() as conn:
                if not postgres:
                    conn.exec_driver_sql(f"SET SESSION max_statement_time = {int(seconds)}")
                yield lambda sql, params: read_on(conn, sql, params)
        except sa_exc.DBAPIError as exc:
            raise ConnectorError(self._explain(exc)) from None
        finally:
            engine.dispose()

    def _read(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
        """Column names and rows of one query (test connection)."""
        with self._reader() as read:
            columns, values, _n = read(sql, params)
        return columns, list(zip(*values, strict=True))

    def _explain(self, exc: Exception) -> str:
        """The driver's error, without the URL (it may carry the password) and without row values."""
        orig = getattr(exc, "orig", exc)
        text = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
        if self.secret:
            text = text.replace(self.secret, mask_url(self.secret))
        try:
            from sqlalchemy.engine import make_url

            password = make_url(self.secret).password
            if password:
                text = text.replace(str(password), "***")
        except Exception:  # noqa: BLE001, S110
            pass
        low = text.lower()
        # libmariadb reports a silent server as a lost connection while reading its greeting
        silent = "lost connection" in low and ("handshake" in low or "system error: 110" in low)
        if (
            "timeout" in low
            or "timed out" in low
            or "canceling statement" in low
            or "max_statement_time" in low
            or silent
        ):
            hint = "the database did not answer in time"
        elif "access denied" in low or "authentication failed" in low or "password" in low:
            hint = "the database refused the credentials"
        elif "connection refused" in low or "can't connect" in low or "could not connect" in low:
            hint = "the database cannot be reached"
        elif "read-only" in low or "read only" in low:
            hint = "the query tried to write; connectors only read"
        else:
            hint = "the database reported an error"
        return f"{hint}: {text[:300]}"

    #
    # Queries
    #

    def _quote(self, name: str) -> str:
        quote = '"' if _backend(self.secret) == "postgresql" else "`"
        return ".".join(f"{quote}{part}{quote}" for part in name.split("."))

    def _base(self) -> str:
        if self.config["query"]:
            return self.config["query"]
        return f"SELECT * FROM {self._quote(self.config['table'])}"

    def _order_columns(self) -> list[str]:
        cursor = self.config["cursor_column"]
        return [cursor, *[k for k in self.config["key_columns"] if k != cursor]]

    def page_query(self, page_rows: int, after: list[Any] | None) -> tuple[str, dict[str, Any]]:
        columns = [f"crmhub_src.{self._quote(c)}" for c in self._order_columns()]
        where, params = "", {}
        if after is not None:
            ors = []
            for i in range(len(columns)):
                parts = [f"{columns[j]} = :p{j}" for j in range(i)] + [f"{columns[i]} > :p{i}"]
                ors.append("(" + " AND ".join(parts) + ")")
            params = {f"p{i}": v for i, v in enumerate(after)}
            where = " WHERE " + " OR ".join(ors)
        sql = (
            f"SELECT * FROM ({self._base()}) AS crmhub_src{where} ORDER BY {', '.join(columns)} LIMIT {int(page_rows)}"
        )
        return sql, params

    def preview(self, limit: int = 5) -> Preview:
        sql, params = self.page_query(limit, None)
        columns, rows = self._read(sql, params)
        missing = [c for c in self._order_columns() if c not in columns]
        notes = []
        if missing:
            raise ConnectorError(f"the result has no column {', '.join(missing)}; it has: {', '.join(columns)}")
        return Preview(
            columns=columns, rows=[dict(zip(columns, map(cell_text, r), strict=True)) for r in rows], notes=notes
        )

    def pages(self, page_rows: int) -> Iterator[Page]:
        after = [cursor_value_load(v) for v in self.cursor["after"]] if self.cursor else None
        order = self._order_columns()
        with self._reader() as read:
            while True:
                sql, params = self.page_query(page_rows, after)
                columns, values, size = read(sql, params)
                if not size:
                    return
                missing = [c for c in order if c not in columns]
                if missing:
                    raise ConnectorError(f"the result has no column {', '.join(missing)}")
                after = [values[columns.index(c)][-1] for c in order]
                if any(v is None for v in after):
                    raise ConnectorError(
                        "a row has an empty cursor or key column; such rows cannot be read incrementally"
                    )
                cursor = {"columns": order, "after": [cursor_value_dump(v) for v in after]}
                # Column by column: one pass of C per column instead of a call per cell.
                cells = [column_text(column) for column in values]
                yield Page(columns=columns, cells=cells, size=size, cursor=cursor)
                if size < page_rows:
                    return
