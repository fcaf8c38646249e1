"""What a seized server holds: every row of every table, every Redis key with its value, every log
line; and searches through them. A value is searched as the bytes it is stored as (text UTF-8
encoded, binary columns as they are)."""

from __future__ import annotations

import ipaddress
import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from django.db import connection

from signalserver.logging import JsonFormatter, RedactingFilter
from signalserver.redis_clients import sync_redis


@dataclass(frozen=True)
class Cell:
    """One stored value: where it is (`table.column`, `redis:<key>`, `log`) and its bytes."""

    place: str
    value: bytes
    raw: object = None  # the value as read (a datetime, an int, ...)
    row: tuple = ()  # the rest of its row (database), for messages

    def __str__(self) -> str:
        return f"{self.place} = {self.value[:120]!r}"


def _bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat().encode()
    return str(value).encode()


def database() -> list[Cell]:
    """Every non-null value of every table in the database: every model's (`apps.get_models()`)
    and the others (migrations, beat, auth, sessions), read as stored."""
    cells = []
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            columns = [column.name for column in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        cells.append(Cell(f"{table}.{column}", _bytes(value), value, row))
    return cells


def redis(*, alive_at_ms: int | None = None) -> list[Cell]:
    """Every key of the test's Redis db and every value in it (strings, hashes, lists, sets,
    sorted sets, streams). With `alive_at_ms`: only what will still be there at that time (keys
    with no expiry, or one later)."""
    client = sync_redis()
    cells = []
    for key in client.scan_iter(count=1000):
        expires = client.pexpiretime(key)
        if expires == -2 or (alive_at_ms is not None and expires != -1 and expires <= alive_at_ms):
            continue
        place = f"redis:{key.decode(errors='replace')}"
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [item for _, entry in client.xrange(key) for pair in entry.items() for item in pair]
        else:
            raise AssertionError(f"a Redis key of a type the dump does not read: {kind}")
        cells.append(Cell(place + " (key)", key, expires))
        cells += [Cell(place, value, expires) for value in values if value is not None]
    return cells


class LogCapture(logging.Handler):
    """Every record of every logger, at DEBUG: as the project's console handler writes it
    (redacted, JSON) and as the code logged it (message and extra fields, before redaction)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.written: list[str] = []
        self.logged: list[str] = []
        self._formatter, self._redact = JsonFormatter(), RedactingFilter()
        self._levels: dict[logging.Logger, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        self.logged.append(f"{record.getMessage()} {extras!r}")
        copy = logging.makeLogRecord(vars(record))
        self._redact.filter(copy)
        self.written.append(self._formatter.format(copy))

    def __enter__(self) -> LogCapture:
        loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
        self._levels = {logger: logger.level for logger in loggers}
        for logger in loggers:
            logger.setLevel(logging.DEBUG)
        # First, before the console handler's redaction rewrites the record in place.
        logging.getLogger().handlers.insert(0, self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeHandler(self)
        for logger, level in self._levels.items():
            logger.setLevel(level)

    def cells(self, *, before_redaction: bool = False) -> list[Cell]:
        lines = self.logged if before_redaction else self.written
        return [Cell("log" if not before_redaction else "log (as logged)", line.encode()) for line in lines]


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# --- what to look for -------------------------------------------------------------------------


def uuid_forms(value: uuid.UUID) -> list[bytes]:
    """A UUID as text, as hex without dashes, and as its 16 bytes."""
    return [str(value).encode(), str(value).upper().encode(), value.hex.encode(), value.bytes]


def number_forms(number: str) -> list[bytes]:
    """An E.164 number with and without its `+`, and its national digits (country code 1 or 44)."""
    digits = number.lstrip("+")
    national = digits[2:] if digits.startswith("44") else digits[1:]
    return [number.encode(), digits.encode(), national.encode()]


def address_forms(ip: str) -> list[bytes]:
    """An IP address as text (compressed and, for IPv6, exploded) and packed."""
    address = ipaddress.ip_address(ip)
    return sorted({str(address).encode(), address.exploded.encode(), address.packed})


def timestamp_forms(ms: int) -> list[bytes]:
    """A millisecond timestamp as decimal text, as a big-endian uint64 and as a protobuf varint."""
    varint, rest = bytearray(), ms
    while True:
        byte, rest = rest & 0x7F, rest >> 7
        varint.append(byte | (0x80 if rest else 0))
        if not rest:
            break
    return [str(ms).encode(), ms.to_bytes(8, "big"), bytes(varint)]


def find(cells: list[Cell], needles: list[bytes]) -> list[Cell]:
    return [cell for cell in cells if any(needle in cell.value for needle in needles)]


def where(cells: list[Cell]) -> list[str]:
    """Where the cells are, for assertion messages."""
    return sorted({str(cell) for cell in cells})
