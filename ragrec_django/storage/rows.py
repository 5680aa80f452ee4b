"""Rows of the serving path read without the ORM's query compiler.

A recommendation request reads a handful of rows (the active generations, the serving configuration,
the anchor item, the results' items). The ORM compiles each of those queries anew, 0.3-0.6 ms of
Python apiece on a 2-core machine, more than PostgreSQL spends answering them (docs/benchmarks.md,
"Serving reads without the query compiler"). Here each model's column list and converters are worked
out once per process; a read is one bound statement and ``Model.from_db``, so the instances are the
ORM's own (deferred fields load on access, ``save()`` works) and reads go to the database the host's
routers pick for the model.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import connections, router
from django.db.models import Model


@dataclass(frozen=True)
class _Columns:
    names: tuple[str, ...]  # attnames, in the order of the statement's columns
    select: str  # the quoted column list
    table: str
    fields: tuple


@functools.cache
def _columns(model: type[Model], fields: tuple[str, ...]) -> _Columns:
    chosen = tuple(model._meta.get_field(name) for name in fields)
    quote = connections["default"].ops.quote_name
    return _Columns(
        names=tuple(field.attname for field in chosen),
        select=", ".join(quote(field.column) for field in chosen),
        table=quote(model._meta.db_table),
        fields=chosen,
    )


@functools.cache
def _converters(model: type[Model], fields: tuple[str, ...], alias: str) -> tuple[tuple[int, object, tuple], ...]:
    """(column index, column, the functions the ORM applies to its values, e.g. JSON decoding) per column that has
    any; each is called as the ORM calls it, with the calling thread's connection."""
    connection = connections[alias]
    found = []
    for index, field in enumerate(_columns(model, fields).fields):
        column = field.get_col(model._meta.db_table)
        functions = tuple(connection.ops.get_db_converters(column) + field.get_db_converters(connection))
        if functions:
            found.append((index, column, functions))
    return tuple(found)


def _read(model: type[Model], fields: tuple[str, ...], where: str, params) -> tuple[_Columns, str, list[tuple]]:
    columns = _columns(model, fields)
    alias = router.db_for_read(model) or "default"
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s FROM %s WHERE %s" % (columns.select, columns.table, where), params)
        rows = cursor.fetchall()
    converters = _converters(model, fields, alias)
    if converters:
        rows = [_converted(row, converters, connection) for row in rows]
    return columns, alias, rows


def _converted(row: tuple, converters, connection) -> tuple:
    values = list(row)
    for index, column, functions in converters:
        for function in functions:
            values[index] = function(values[index], column, connection)
    return tuple(values)


@functools.cache
def _all_fields(model: type[Model], omit: frozenset[str]) -> tuple[str, ...]:
    return tuple(field.name for field in model._meta.concrete_fields if field.name not in omit)


def instances(model: type[Model], where: str, params: Sequence, *, omit: Iterable[str] = ()) -> list[Model]:
    """``model`` instances of the rows matching ``where`` (SQL with ``%s`` placeholders), fields in ``omit`` deferred."""
    columns, alias, rows = _read(model, _all_fields(model, frozenset(omit)), where, params)
    return [model.from_db(alias, columns.names, row) for row in rows]


def values(model: type[Model], fields: Sequence[str], where: str, params: Sequence) -> list[tuple]:
    """The ``fields`` of the rows matching ``where``, in that order, converted as the ORM converts them."""
    return _read(model, tuple(fields), where, params)[2]


def select(model: type[Model], columns: str, where: str, params: Sequence) -> list[tuple]:
    """``SELECT columns FROM model's table WHERE where`` (SQL with ``%s`` placeholders) on the model's read database."""
    with connections[router.db_for_read(model) or "default"].cursor() as cursor:
        cursor.execute("SELECT %s FROM %s WHERE %s" % (columns, _columns(model, ()).table, where), params)
        return cursor.fetchall()
