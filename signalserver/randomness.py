"""Random bytes for the hot paths, without a system call each.

`os.urandom` releases the GIL around its getrandom() call. In the server the event loop and the
database threads share one GIL, so every call can hand it to another thread and then wait to get
it back: 0.5 µs a call alone, 2.4 µs beside one busy thread, which runs meanwhile (measured
here). Message guids, queue-row nonces, socket request ids and request ids take several of them
per message, so they come from a buffer per thread that `os.urandom` fills 4 KiB at a time: the
same randomness, one system call per few hundred values (docs/performance.md, "Relay back
above its level"). Bytes are handed out once and never again; a forked child starts with empty
buffers, so it never repeats its parent's.
"""

from __future__ import annotations

import os
import threading
import uuid

CHUNK_BYTES = 4096

_generation = 0  # incremented in a forked child: every buffer of the parent is stale there


class _Buffer(threading.local):
    def __init__(self) -> None:
        self.generation = -1
        self.data = b""
        self.offset = 0


_buffer = _Buffer()


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


def random_bytes(count: int) -> bytes:
    """`count` bytes from the operating system's generator, as `os.urandom` gives them."""
    buffer = _buffer
    start = buffer.offset
    if buffer.generation != _generation or start + count > len(buffer.data):
        buffer.generation = _generation
        buffer.data = os.urandom(max(CHUNK_BYTES, count))
        start = 0
    buffer.offset = start + count
    return buffer.data[start : start + count]


def uuid4() -> uuid.UUID:
    """A random (version 4) UUID, as `uuid.uuid4()` makes it."""
    return uuid.UUID(bytes=random_bytes(16), version=4)


def random_id(bits: int) -> int:
    """A random integer of at most `bits` bits (up to 64), never 0."""
    return (int.from_bytes(random_bytes(8)) >> (64 - bits)) or 1
