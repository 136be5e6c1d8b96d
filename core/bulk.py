"""Bulk inserts of many rows in one statement stream.

``bulk_insert(model, objs)`` writes unsaved instances with PostgreSQL's ``COPY … FROM STDIN`` and with
``bulk_create`` elsewhere. ``COPY`` sends each value in psycopg's own format, where ``bulk_create`` on PostgreSQL
builds ``UNNEST`` arrays that psycopg quotes client-side: for rows carrying JSON (an outbox event's payment) that
quoting was about a quarter of check-ach's set-based apply. The values are what ``save`` would write: each field's
``pre_save`` (``auto_now_add`` and the like) and ``get_db_prep_save`` (skipped where it would change nothing:
``_preparer``). Like ``bulk_create`` on a backend that cannot
return ids, the instances get no primary key back: use it where nobody reads the new ids. Runs in the caller's
transaction (triggers and constraints fire as for an INSERT). ``ignore_conflicts=True`` leaves out the rows a unique
constraint refuses, as ``bulk_create``'s does (on PostgreSQL: ``COPY`` into a temporary table, then one ``INSERT …
SELECT … ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import datetime

from django.db import connection, models, transaction
from django.db.models.fields import AutoFieldMixin

#: Rows per ``bulk_create`` statement off PostgreSQL.
BATCH_SIZE = 500

#: Field classes (exactly these, not subclasses: an encrypted field is a CharField) whose ``get_db_prep_save`` hands
#: a value of the given type to PostgreSQL unchanged — a string, a UUID, a time-zone-aware date-time, a boolean —
#: so that preparing it is skipped. Integers are not here (psycopg 3 wraps them in sized types).
_UNCHANGED: dict[type, type] = {models.CharField: str, models.TextField: str, models.UUIDField: uuid.UUID,
                                models.DateTimeField: datetime, models.BooleanField: bool}


def _insertable(model: type[models.Model]) -> list[models.Field]:
    """The concrete fields an INSERT writes: all but a database-generated (auto) primary key."""
    return [field for field in model._meta.concrete_fields
            if not (field.primary_key and isinstance(field, AutoFieldMixin))]


def _preparer(field: models.Field) -> Callable[[models.Model], object]:
    """``obj`` → the value an INSERT of ``obj`` writes for ``field`` on PostgreSQL: ``get_db_prep_save(pre_save(obj))``,
    except that a value of the type ``_UNCHANGED`` names for the field's class (its foreign key's target's) is
    written as it is, ``None`` too — what Django's preparation would give back for them."""
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    kind = _UNCHANGED.get(type(target))
    pre_save, prepare = field.pre_save, field.get_db_prep_save

    def generic(obj: models.Model) -> object:
        return prepare(pre_save(obj, add=True), connection)

    if kind is None:
        return generic
    aware = kind is datetime

    def prepared(obj: models.Model) -> object:
        value = pre_save(obj, add=True)
        if value is None or (type(value) is kind and (not aware or value.tzinfo is not None)):
            return value
        return prepare(value, connection)

    return prepared


def bulk_insert(model: type[models.Model], objs: Sequence[models.Model], *, ignore_conflicts: bool = False) -> int:
    """Insert ``objs`` (unsaved ``model`` instances) in bulk; returns how many were offered. No primary keys are read
    back. ``ignore_conflicts``: a row that would break a unique constraint is left out, as ``bulk_create``'s
    ``ignore_conflicts`` leaves it (on PostgreSQL the rows are ``COPY``'d into a temporary table of the same columns
    and inserted from there with ``ON CONFLICT DO NOTHING``)."""
    if not objs:
        return 0
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs, batch_size=BATCH_SIZE, ignore_conflicts=ignore_conflicts)
        return len(objs)
    fields = _insertable(model)
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    # Identifiers from the model's own metadata, quoted; the values travel in COPY's data stream. psycopg's cursor
    # is used directly (Django's has no COPY), so its errors are wrapped into Django's (IntegrityError, …) here.
    # With ignore_conflicts, in a transaction (a savepoint in the caller's) that holds the temporary table.
    with transaction.atomic() if ignore_conflicts else nullcontext(), connection.cursor() as cursor, \
            connection.wrap_database_errors:
        target = table
        if ignore_conflicts:  # the same columns and types, no constraints; dropped below, or at rollback
            target = "bulk_insert_rows"
            cursor.execute(f"CREATE TEMPORARY TABLE {target} ON COMMIT DROP AS "  # noqa: S608 (metadata)
                           f"SELECT {columns} FROM {table} WITH NO DATA")
        with cursor.cursor.copy(f"COPY {target} ({columns}) FROM STDIN") as copy:
            preparers = [_preparer(field) for field in fields]
            write = copy.write_row
            for obj in objs:
                write([prepare(obj) for prepare in preparers])
        if ignore_conflicts:
            cursor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {target} "  # noqa: S608
                           "ON CONFLICT DO NOTHING")
            cursor.execute(f"DROP TABLE {target}")
    return len(objs)
