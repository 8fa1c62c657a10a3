"""A cheaper rollback copy for moto's TransactWriteItems, for benchmarks whose tables hold thousands
of items (benchmarks/fairness.py, benchmarks/consumer_efficiency.py).

moto backs up every table a transaction names with a deep copy, to restore it if the transaction
is cancelled: each transaction costs time in proportion to the table's size, so thousands of adds
take quadratic time. Here the backup is a shallow copy of the table whose items are shared, except
those the transaction names (deep-copied): they are the only ones it can change, so restoring the
backup restores exactly what a deep copy would. Behaviour is unchanged (the same conditions, the
same cancellation reasons); only the copying is cheaper. Install it in the moto server's process,
after dev/promptsvc_dev/moto_atomic.py (which serializes DynamoDB requests, so nothing else changes
a table during a transaction).
"""

import copy
import threading
import types
from typing import Any

_touched = threading.local()


def _hash_values(transact_items: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The hash-key values (as strings) each table's items in the transaction name."""
    found: dict[str, set[str]] = {}
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        source = op.get("Key") or op.get("Item") or {}
        found.setdefault(op.get("TableName", ""), set()).update(
            str(next(iter(value.values()))) for value in source.values() if isinstance(value, dict)
        )
    return found


def install() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    def backup(value: Any, memo: Any = None) -> Any:
        if not isinstance(value, Table):
            return copy.deepcopy(value, memo)
        touched = getattr(_touched, "values", {}).get(value.name, set())
        clone = copy.copy(value)
        items = type(value.items)(dict) if hasattr(value.items, "default_factory") else {}
        for key, item in value.items.items():
            items[key] = copy.deepcopy(item) if str(getattr(key, "value", key)) in touched else item
        clone.items = items
        return clone

    models.copy = types.SimpleNamespace(deepcopy=backup, copy=copy.copy)  # type: ignore[attr-defined]
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        _touched.values = _hash_values(transact_items)
        try:
            original(self, transact_items)
        finally:
            _touched.values = {}

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
