"""Transaction helpers for the rule "never hold a transaction or a lock across an HTTP call" (ARCHITECTURE.md §2)."""

from django.db import connection


def in_transaction() -> bool:
    """True inside an atomic block other than a test case's own wrapper (which is not a real transaction)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)
