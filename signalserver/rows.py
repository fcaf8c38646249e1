"""Model instances from one raw SQL row, for reads made on every request.

Building a query with the ORM costs far more CPU than running it: looking up a device with its
account (`select_related`) took about 1 ms to compile and 0.07 ms to run, on every HTTP request
(docs/performance.md, "Prekey bundles over sockets"). `RowLoader` writes the column list once
and makes instances the way the ORM does (`Model.from_db`, after the same database converters),
so they behave like any other: saving, related objects, refreshing. `insert` and `update` write
rows the way `save()` does, by statements written once per model (and set of columns) with their
parameters bound by the server.
"""

from __future__ import annotations

from functools import cache

from django.db import connection

from signalserver.db import bound_cursor


class RowLoader:
    """Loads instances of `model` from its concrete columns, selected as `columns(alias)` gives them."""

    def __init__(self, model):
        self.model = model
        self.fields = model._meta.concrete_fields
        self.attnames = [field.attname for field in self.fields]
        self._converters: dict[str, list] = {}  # per database vendor

    def __len__(self) -> int:
        return len(self.fields)

    def columns(self, alias: str) -> str:
        return ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}" for field in self.fields)

    def load(self, values) -> object:
        """An instance from the values of `columns`, in that order."""
        converters = self._converters.get(connection.vendor)
        if converters is None:
            converters = self._converters[connection.vendor] = self._converters_for()
        values = list(values)
        for index, functions, expression in converters:
            for function in functions:
                values[index] = function(values[index], expression, connection)
        return self.model.from_db(connection.alias, self.attnames, values)

    def _converters_for(self) -> list:
        """What the ORM's compiler applies to each column (e.g. JSON text to objects)."""
        found = []
        for index, field in enumerate(self.fields):
            expression = field.get_col(self.model._meta.db_table)
            functions = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
            if functions:
                found.append((index, functions, expression))
        return found


def insert(instance) -> None:
    """`instance.save(force_insert=True)` without building the statement: every concrete column,
    as the ORM prepares its value (`pre_save`, then `get_db_prep_save`); an auto-incremented
    primary key comes back by RETURNING. No signals are sent (none of our models has receivers).
    Elsewhere than on PostgreSQL: the ORM's own save."""
    if connection.vendor != "postgresql":
        instance.save(force_insert=True)
        return
    fields, auto, sql = _insert_statement(type(instance))
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with bound_cursor() as cursor:
        cursor.execute(sql, values)
        if auto is not None:
            setattr(instance, auto.attname, cursor.fetchone()[0])
    instance._state.adding, instance._state.db = False, connection.alias


def update(instance, field_names: list[str]) -> None:
    """`instance.save(update_fields=field_names)` of a saved instance, without building the
    statement; by its primary key, whether or not the row still exists (as `save` with
    update_fields raises when it does not, callers hold the row locked)."""
    if connection.vendor != "postgresql":
        instance.save(update_fields=field_names)
        return
    fields, sql = _update_statement(type(instance), tuple(field_names))
    values = [field.get_db_prep_save(field.pre_save(instance, False), connection) for field in fields]
    values.append(instance._meta.pk.get_db_prep_value(instance.pk, connection))
    with bound_cursor() as cursor:
        cursor.execute(sql, values)


@cache
def _insert_statement(model) -> tuple[list, object, str]:
    meta, quote = model._meta, connection.ops.quote_name
    auto = meta.auto_field
    fields = [field for field in meta.concrete_fields if field is not auto]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if auto is not None:
        sql += f" RETURNING {quote(auto.column)}"
    return fields, auto, sql


@cache
def _update_statement(model, field_names: tuple[str, ...]) -> tuple[list, str]:
    meta, quote = model._meta, connection.ops.quote_name
    fields = [meta.get_field(name) for name in field_names]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    return fields, f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
