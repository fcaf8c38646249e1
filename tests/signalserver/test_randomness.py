"""signalserver.randomness: buffered os.urandom for guids, nonces and request ids."""

import os
import threading
import uuid

from signalserver.randomness import CHUNK_BYTES, random_bytes, random_id, uuid4


def test_bytes_are_handed_out_once_across_refills():
    values = [random_bytes(12) for _ in range(3 * CHUNK_BYTES // 12)]  # several buffers' worth
    assert all(len(value) == 12 for value in values)
    assert len(set(values)) == len(values)
    assert len(random_bytes(CHUNK_BYTES + 1)) == CHUNK_BYTES + 1  # more than a buffer at once


def test_uuids_are_random_version_4():
    guids = [uuid4() for _ in range(5000)]
    assert len(set(guids)) == len(guids)
    assert {guid.version for guid in guids} == {4}
    assert {guid.variant for guid in guids} == {uuid.RFC_4122}


def test_ids_fit_their_bits_and_are_never_zero():
    ids = [random_id(63) for _ in range(2000)]
    assert all(0 < value < 2**63 for value in ids)
    assert len(set(ids)) == len(ids)
    assert all(0 < random_id(2) < 4 for _ in range(200))


def test_threads_never_share_bytes():
    taken: list[list[bytes]] = [[] for _ in range(4)]

    def take(index: int) -> None:
        taken[index].extend(random_bytes(16) for _ in range(1000))

    threads = [threading.Thread(target=take, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for values in taken for value in values]
    assert len(set(every)) == len(every) == 4000


def test_a_forked_child_never_repeats_its_parents_bytes():
    random_bytes(16)  # the parent's buffer holds unused bytes now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        try:
            os.write(write, random_bytes(16))
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    from_child = os.read(read, 16)
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(from_child) == 16
    assert from_child != random_bytes(16)
