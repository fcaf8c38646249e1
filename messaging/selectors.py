"""Reads of the messaging app that code outside it shares."""

from __future__ import annotations

from django.db import connection

from messaging.models import QueuedMessage
from signalserver.metrics_export import QUEUE_EXACT_COUNT


def queue_figures() -> tuple[int, int | None]:
    """(depth, hour since the epoch of the oldest row or None): index-only reads, for the metrics
    (registered with `signalserver.metrics_export` in the app's `ready()`)."""
    table = QueuedMessage._meta.db_table
    with connection.cursor() as cursor:
        # The oldest hour from the queued_hour index; the count stops at QUEUE_EXACT_COUNT rows.
        cursor.execute(
            f"SELECT (SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT %s) AS capped),"
            f" (SELECT min(queued_hour) FROM {table})",
            [QUEUE_EXACT_COUNT],
        )
        depth, oldest_hour = cursor.fetchone()
        if depth >= QUEUE_EXACT_COUNT and connection.vendor == "postgresql":
            # Live rows as PostgreSQL's statistics count them (inserts less deletes, kept
            # current by every transaction), never below what was counted.
            cursor.execute("SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = %s::regclass", [table])
            row = cursor.fetchone()
            depth = max(depth, int(row[0])) if row else depth
    return int(depth), oldest_hour
