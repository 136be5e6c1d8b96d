"""Hand-written statements built from model metadata: ``INSERT``s the ORM cannot say in one round trip (``ON CONFLICT
… DO NOTHING``, a value read by the INSERT itself), and the rows the payment submission reads and writes on every
request, where the ORM's query compilation costs more CPU than the database does (``insert_row``, ``update_where``,
``select_one``, ``select_first``). Each gives the statement, the parameters and the result the ORM call it replaces
gives (``tests/core/test_sql.py`` compares them on SQLite and PostgreSQL). ``AnyOf`` is the ORM's ``__in`` with its
values sent to PostgreSQL as one array."""

import threading
from dataclasses import dataclass

from django.core.exceptions import EmptyResultSet
from django.db import models, transaction
from django.db.models import F, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.lookups import In
from django.db.models.query import MAX_GET_RESULTS
from django.db.transaction import TransactionManagementError


def insert_parts(instance: models.Model, connection, *, exclude: tuple[str, ...] = ()) -> tuple[str, str, list]:
    """(quoted table, quoted column list, values) for inserting ``instance``: every concrete field but a primary key
    the database generates and ``exclude``, each value prepared as ``Model.save`` prepares it (``pre_save(add=True)``:
    ``auto_now_add`` dates are set on the instance too, then ``get_db_prep_save``). Identifiers come from the model's
    own metadata, quoted; values are meant to travel as parameters."""
    meta = instance._meta
    quote = connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if not (f.primary_key and f.db_returning) and f.name not in exclude]
    values = [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in fields]
    return quote(meta.db_table), ", ".join(quote(f.column) for f in fields), values


def mark_inserted(instance: models.Model, connection, pk) -> None:
    """Record on ``instance`` that it now exists in the database with primary key ``pk`` (what ``save`` does)."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias


def insert_row(instance: models.Model) -> models.Model:
    """INSERT ``instance`` (a new row of a model without parents, signals or database defaults): the row and the
    instance afterwards are what ``instance.save(force_insert=True)`` gives (``auto_now`` dates set, a generated
    primary key read back or a default one filled in, ``_state`` saved), in one parameterised statement built from the
    model's metadata: 0.1 to 0.25 ms less CPU than ``save``, most of whose cost is compiling the query. Database errors
    are Django's (``IntegrityError`` …)."""
    if instance._meta.parents:
        raise ValueError("insert_row writes one table: a model with parents needs save()")
    connection = transaction.get_connection()
    pk = instance._meta.pk
    if instance.pk is None and not pk.db_returning:
        instance.pk = pk.get_pk_value_on_save(instance)  # a default key (uuid4) as save() fills it in
    table, columns, values = insert_parts(instance, connection)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(values))})"  # noqa: S608 (metadata)
    if pk.db_returning:
        sql += f" RETURNING {connection.ops.quote_name(pk.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        mark_inserted(instance, connection, cursor.fetchone()[0] if pk.db_returning else instance.pk)
    return instance


def _condition_fields(meta, where: dict) -> list[tuple[str, models.Field, str]]:
    """(lookup, field, kind) of each condition, in the order the ORM writes them: ``filter(**where)`` sorts its
    keyword arguments. A condition is ``name`` (or ``pk``) = value (kind ``exact``; None is ``isnull``, as the ORM
    reads it), or ``name__in`` = a non-empty collection without None (kind ``in``); the ORM's other lookups, an empty
    ``__in`` (no query at all) and a None in one (dropped by the ORM) are refused, not translated, and so is no
    condition at all (a statement on every row is not what these are for)."""
    if not where:
        raise ValueError("at least one condition")
    conditions = []
    for lookup in sorted(where):
        name, kind = (lookup[:-4], "in") if lookup.endswith("__in") else (lookup, "exact")
        value = where[lookup]
        if "__" in name or (kind == "in" and (isinstance(value, str) or not value or None in value)):
            raise ValueError(f"unsupported condition {lookup}={value!r}: equality or a non-empty __in only")
        if value is None:
            kind = "isnull"
        conditions.append((lookup, meta.pk if name == "pk" else meta.get_field(name), kind))
    return conditions


def _where_sql(table: str, conditions, where: dict, quote) -> str:
    """The WHERE clause of ``conditions`` as the ORM writes it: qualified columns, parenthesised when there are
    several, one placeholder per value of an ``__in``."""
    parts = []
    for lookup, field, kind in conditions:
        column = f"{table}.{quote(field.column)}"
        if kind == "in":
            parts.append(f"{column} IN ({', '.join(['%s'] * len(where[lookup]))})")
        else:
            parts.append(f"{column} IS NULL" if kind == "isnull" else f"{column} = %s")
    return parts[0] if len(parts) == 1 else f"({' AND '.join(parts)})"


def _where_params(conditions, where: dict, connection) -> list:
    """The conditions' values prepared as the ORM's ``exact`` / ``in`` lookups prepare them (``get_db_prep_value``;
    an ``__in`` in its collection's iteration order, as the ORM keeps it)."""
    params = []
    for lookup, field, kind in conditions:
        if kind == "in":
            params += [field.get_db_prep_value(value, connection) for value in where[lookup]]
        elif kind == "exact":
            params.append(field.get_db_prep_value(where[lookup], connection))
    return params


def _increment(field: models.Field, value) -> object | None:
    """The integer ``n`` of ``F(field) + n`` (the one expression ``update_where`` writes), None for a plain value;
    any other expression is refused."""
    if not hasattr(value, "resolve_expression"):
        return None
    if (isinstance(value, CombinedExpression) and value.connector == CombinedExpression.ADD
            and isinstance(value.lhs, F) and value.lhs.name == field.name
            and isinstance(value.rhs, Value) and type(value.rhs.value) is int):
        return value.rhs.value
    raise ValueError(f"update_where writes plain values and F({field.name!r}) + n only, not {value!r}")


def update_where(model: type[models.Model], *, where: dict, values: dict) -> int:
    """``model.objects.filter(**where).update(**values)`` for conditions ``name=value`` (``pk`` allowed) and
    ``name__in=collection``, and values that are plain or ``F(name) + n`` (a counter: ``version``): the same statement
    text and the same prepared parameters (``get_db_prep_value`` for a condition, ``get_db_prep_save`` for a value,
    the increment as a parameter), built from the model's metadata without the ORM's query compilation. Returns how
    many rows changed."""
    connection = transaction.get_connection()
    meta, quote = model._meta, connection.ops.quote_name
    table = quote(meta.db_table)
    targets = [meta.get_field(name) for name in values]
    increments = [_increment(field, value) for field, value in zip(targets, values.values(), strict=True)]
    conditions = _condition_fields(meta, where)
    where_sql = _where_sql(table, conditions, where, quote)
    assignments, params = [], []
    for field, value, n in zip(targets, values.values(), increments, strict=True):
        column = quote(field.column)
        if n is not None:
            assignments.append(f"{column} = ({table}.{column} + %s)")
            params.append(n)
            continue
        prepared = field.get_db_prep_save(value, connection)
        if prepared is None:  # the ORM writes a NULL into the statement, not as a parameter
            assignments.append(f"{column} = NULL")
        else:
            assignments.append(f"{column} = %s")
            params.append(prepared)
    sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {where_sql}"  # noqa: S608 (quoted metadata)
    params += _where_params(conditions, where, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@dataclass(frozen=True)
class _Select:
    """One compiled SELECT shape: its text, the attnames of its columns and each column's converters."""

    connection: object
    sql: str
    attnames: list[str]
    converters: list[tuple[int, list, object]]  # (column index, converters, the column's expression)


_selects = threading.local()  # per thread, as Django's connections are: converters are bound to their connection


def _compile_select(model, conditions, where: dict, *, order_by: tuple[str, ...], limit: int | None,
                    for_update: bool, defer: tuple[str, ...], connection) -> _Select:
    """The SELECT of one shape for ``connection``, built once per thread from the model's metadata and memoised. The
    text depends on the model, the conditions (an ``IS NULL`` or not, the ``__in`` sizes), the ordering, the limit,
    the lock and the deferred fields; never on the values."""
    shape = tuple((lookup, kind, len(where[lookup]) if kind == "in" else 0) for lookup, _, kind in conditions)
    key = (connection.alias, model, shape, order_by, limit, for_update, defer)
    cache = getattr(_selects, "cache", None)
    if cache is None:
        cache = _selects.cache = {}
    compiled = cache.get(key)
    if compiled is not None and compiled.connection is connection:
        return compiled
    meta, quote = model._meta, connection.ops.quote_name
    table = quote(meta.db_table)
    where_sql = _where_sql(table, conditions, where, quote)
    for name in defer:
        if meta.get_field(name).primary_key:
            raise ValueError("the primary key cannot be deferred")
    fields = [f for f in meta.concrete_fields if f.name not in defer]
    parts = ["SELECT " + ", ".join(f"{table}.{quote(f.column)}" for f in fields), "FROM " + table,
             "WHERE " + where_sql]
    if order_by:
        ordering = []
        for name in order_by:
            field = meta.pk if name.lstrip("-") == "pk" else meta.get_field(name.lstrip("-"))
            ordering.append(f"{table}.{quote(field.column)} {'DESC' if name.startswith('-') else 'ASC'}")
        parts.append("ORDER BY " + ", ".join(ordering))
    if limit is not None:
        parts.append(connection.ops.limit_offset_sql(0, limit))
    if for_update and connection.features.has_select_for_update:  # SQLite has no row locks: the ORM omits it too
        parts.append(connection.ops.for_update_sql())
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(meta.db_table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converters.append((index, found, column))
    compiled = cache[key] = _Select(connection, " ".join(parts), [f.attname for f in fields], converters)
    return compiled


def _select_rows(model, *, where: dict, order_by: tuple[str, ...] = (), limit: int | None, for_update: bool = False,
                 defer: tuple[str, ...] = ()) -> list[models.Model]:
    """The instances a ``model.objects`` query of this shape returns, as its ``ModelIterable`` builds them: the row
    through the same converters (backend, then field: ``from_db_value``), then ``Model.from_db`` (``_state`` saved,
    deferred fields deferred)."""
    connection = transaction.get_connection()
    if for_update and connection.features.has_select_for_update and connection.get_autocommit() \
            and connection.features.supports_transactions:
        raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
    conditions = _condition_fields(model._meta, where)
    compiled = _compile_select(model, conditions, where, order_by=order_by, limit=limit, for_update=for_update,
                               defer=tuple(defer), connection=connection)
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, _where_params(conditions, where, connection))
        rows = cursor.fetchall()
    instances = []
    for row in rows:
        if compiled.converters:
            row = list(row)
            for index, converters, column in compiled.converters:
                for converter in converters:
                    row[index] = converter(row[index], column, connection)
        instances.append(model.from_db(connection.alias, compiled.attnames, row))
    return instances


def select_one(model: type[models.Model], *, where: dict, for_update: bool = False,
               defer: tuple[str, ...] = ()) -> models.Model:
    """``model.objects[.select_for_update()][.defer(*defer)].get(**where)`` for the conditions ``update_where``
    takes: the same statement (no ordering, ``LIMIT 21``, ``FOR UPDATE`` where the database has row locks, refused
    outside a transaction as the ORM refuses it), the same instance, the same ``model.DoesNotExist`` /
    ``model.MultipleObjectsReturned`` with the same message. The statement is compiled once per shape and thread
    (``_compile_select``): about 0.3 ms less CPU per read than the ORM, for the reads every submission makes."""
    found = _select_rows(model, where=where, limit=MAX_GET_RESULTS, for_update=for_update, defer=defer)
    if len(found) == 1:
        return found[0]
    name = model._meta.object_name
    if not found:
        raise model.DoesNotExist(f"{name} matching query does not exist.")
    count = len(found) if len(found) < MAX_GET_RESULTS else f"more than {MAX_GET_RESULTS - 1}"
    raise model.MultipleObjectsReturned(f"get() returned more than one {name} -- it returned {count}!")


def select_first(model: type[models.Model], *, where: dict, order_by: tuple[str, ...], for_update: bool = False,
                 defer: tuple[str, ...] = ()) -> models.Model | None:
    """``model.objects[.select_for_update()].filter(**where)[.defer(*defer)].order_by(*order_by).first()``: the same
    statement (``ORDER BY … LIMIT 1``, then ``FOR UPDATE`` where the database has row locks), the same instance or
    None. ``order_by`` is explicit (field names, ``-`` for descending, ``pk``): ``first()`` on a model without
    ``Meta.ordering`` orders by ``("pk",)``, on one with it by that ordering."""
    if not order_by:
        raise ValueError("select_first needs the ordering first() would use")
    found = _select_rows(model, where=where, order_by=tuple(order_by), limit=1, for_update=for_update, defer=defer)
    return found[0] if found else None


class AnyOf(In):
    """``filter(AnyOf(F("field"), values))``: the rows ``filter(field__in=values)`` selects, with the values sent to
    PostgreSQL as ONE array parameter (``field = ANY(%s::type[])``) instead of one placeholder each. For a job's
    thousand ids, the ORM's ``IN (%s, %s, …)`` cost more CPU to compile and bind than the database spent running it:
    psycopg splits and quotes a statement with a placeholder per value, and a statement that long is never cached.
    Each value is prepared as ``__in`` prepares it; None is dropped, and no values means no query at all
    (``EmptyResultSet``), as with ``__in``; a twin is sent twice (``__in`` sends it once: the same rows). On other
    databases, and for a subquery, it is ``__in`` itself."""

    def as_postgresql(self, compiler, connection):
        if not self.rhs_is_direct_value():
            return self.as_sql(compiler, connection)
        field = self.lhs.output_field
        values = [field.get_db_prep_value(value, connection, prepared=True) for value in self.rhs if value is not None]
        if not values:
            raise EmptyResultSet
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs_sql} = ANY(%s::{field.db_type(connection)}[])", (*lhs_params, values)
