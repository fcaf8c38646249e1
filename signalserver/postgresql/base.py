"""Django's PostgreSQL backend, except that a connection the server has closed is never used.

After PostgreSQL restarts (or fails over, or an operator ends sessions), every idle connection in
the pool and every connection a socket database thread keeps (`signalserver.db`) is dead, and
psycopg only finds out when a query fails on it: one failed request per dead connection once the
database is back. A dead idle connection shows itself without a round trip: its socket is readable
(the server's goodbye and end of file) while no query is running. `server_closed` asks the kernel
(a `poll`, no network); connections from the pool are checked on checkout here, and the socket
database threads check theirs before each call.

psycopg-pool's own `check` callback would cost a round trip per checkout, and after a failed check
its retry waits (a backoff capped at the checkout timeout) instead of taking the next connection.
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base

# Checkouts of dead connections replaced in one go; the pool never holds more than its max_size.
MAX_DEAD_CONNECTIONS = 64


def server_closed(connection: psycopg.Connection) -> bool:
    """True when an idle connection has been closed by the server (or is broken already). A
    notice the server sent unasked also makes the socket readable: rare, and it costs one new
    connection."""
    if connection.closed or connection.broken:
        return True
    try:
        poller = select.poll()  # not select(): a busy process has file descriptors past 1024
        poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


class DatabaseWrapper(base.DatabaseWrapper):
    def bound_cursor(self):
        """A cursor whose parameters travel beside the statement (PostgreSQL binds them, binary
        where psycopg can), where Django's cursors quote them into its text. Quoting arrays of
        queue rows cost more CPU than sealing them (docs/performance.md, "Relay back above its
        level"); a statement text run five times on a connection is also prepared
        (psycopg's `prepare_threshold`), so PostgreSQL no longer parses and plans it each time."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            return self._prepare_cursor(base.ServerBindingCursor(self.connection))

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        for _ in range(MAX_DEAD_CONNECTIONS):
            if not server_closed(connection):
                return connection
            connection.close()  # closed, the pool drops it on return and opens a replacement
            pool.putconn(connection)
            connection = super().get_new_connection(conn_params)
        return connection
