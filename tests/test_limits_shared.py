"""The ``--workers`` parent's limit store seen from an event loop (``AsyncSharedStore``, what
AuthZEN over HTTP settles limits with): the same budgets as the blocking client, the deadline,
a new connection after a failure, and a loop that goes on running while the parent answers."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from pdp.limits import Budget
from pdp.limits.shared import ParentStore, SharedStore
from pdp.limits.store import StoreUnavailable

HOUR = 3600 * 10**9


def _budget(key: str, count: int = 3) -> Budget:
    return Budget("velocity.charges", key, count, HOUR)


class SilentParent:
    """A Unix socket that accepts connections and never answers: a parent that hangs."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        for _ in range(8):  # bounded: the tests connect a few times at most
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()
        self._thread.join(5)


def test_the_async_client_takes_from_the_same_budgets_as_the_blocking_one(tmp_path):
    parent = ParentStore(str(tmp_path / "l.sock"))
    blocking = SharedStore(parent.path, timeout=5.0)
    try:
        async def run() -> list:
            client = blocking.asyncio()
            try:
                answers = [await client.take_many([[_budget("a")], [_budget("b", 1)]]) for _ in range(2)]
                answers.append(await client.take_many([[_budget("a"), _budget("b", 1)]], take=False))
                return answers
            finally:
                await client.close()

        first, second, looked = asyncio.run(run())
        assert first == [[], []]
        assert second == [[], [0]]  # b's one unit is gone; a has one of three left
        assert looked == [[1]]  # looking names b, takes nothing
        assert blocking.take([_budget("a")]) == []  # the last unit of a, as the async client left it
        assert blocking.take([_budget("a")]) == [0]
    finally:
        blocking.close()
        parent.close()


def test_a_parent_that_does_not_answer_fails_within_the_deadline_and_the_loop_runs_meanwhile(tmp_path):
    path = str(tmp_path / "l.sock")
    silent = SilentParent(path)
    client = SharedStore(path, timeout=0.3).asyncio()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(1000):  # bounded; cancelled once the call fails
            await asyncio.sleep(0.01)
            ticks += 1

    async def run():
        tick = asyncio.create_task(ticker())
        started = time.monotonic()
        try:
            with pytest.raises(StoreUnavailable):
                await client.take_many([[_budget("a")]])
            waited = time.monotonic() - started
        finally:
            tick.cancel()
        # A parent that answers at that path now: the same client opens a new connection.
        silent.close()
        os.unlink(path)
        parent = ParentStore(path)
        try:
            return waited, await client.take_many([[_budget("a")]])
        finally:
            await client.close()
            parent.close()

    try:
        waited, answer = asyncio.run(run())
    finally:
        silent.close()
    assert 0.25 <= waited < 5.0
    assert ticks >= 3  # the loop was not blocked while the parent kept silent
    assert answer == [[]]
