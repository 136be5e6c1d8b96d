"""Shared pieces of the security tests: the data every role-test starts from, credentials per role, table counts."""

from __future__ import annotations

from django.db import connection

USER = "sec-user-1"
OTHER_USER = "sec-user-2"
ACCOUNT_ID = "sec-acc-1"
ROUTING = "026009593"
ACCOUNT = "739146285017"  # sandbox: settles


def table_counts() -> dict[str, int]:
    """Row count of every table of the database (introspected, so a new table is included)."""
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        counts = {}
        for table in tables:
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
            counts[table] = cursor.fetchone()[0]
    return counts
