"""Model instances from one raw SQL row, for reads made on every request.

Building a query with the ORM costs far more CPU than running it: looking up a device with its
account (`select_related`) took about 1 ms to compile and 0.07 ms to run, on every HTTP request
(docs/performance.md, "Prekey bundles over sockets"). `RowLoader` writes the column list once
and makes instances the way the ORM does (`Model.from_db`, after the same database converters),
so they behave like any other: saving, related objects, refreshing.
"""

from __future__ import annotations

from django.db import connection


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
