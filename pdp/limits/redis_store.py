"""Budgets in Redis (``pdp serve --limits redis://HOST:PORT/DB``), shared by every pdp server
that uses the same Redis.

Each check-and-take is one Lua script (atomic on the Redis server) that reads the Redis clock
(``TIME``), so N units hold however many servers take from a budget at once and whatever
their clocks say. A budget's key is ``pdp:limit:{TAG}:RULE``, where TAG is a digest of the key
values: the budgets one request takes from share a hash slot when their key values are the
same (per-identity limits), so the script may run on Redis Cluster. A key expires when its
budget is full again. A batch's scripts go in one pipeline, in request order.

Once-only keys (``first_use``, pdp/limits/once.py) are members of one sorted set,
``pdp:once``, scored by the Redis time (µs) at which each is forgotten: one script looks the
key up, refuses a new one when ``max_marks`` are live, adds it, and drops the members whose
time is up (so the set never holds more than ``max_marks``). Adding is the script's first
write, so a Redis over its ``maxmemory`` refuses it, as it refuses a budget's. The set's own expiry follows its latest member, so it leaves Redis when idle.

Two clients send the same commands: ``RedisStore`` (redis-py, for the gRPC server's threads,
the shadow candidate and DPoP replays) and ``AsyncRedisStore`` (``redis.asyncio``, for the
AuthZEN HTTP server's event loop). What they send and how they read the answers is written
once, free of I/O (``_exchange``); each client only moves the bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from typing import Any, Generator, Sequence

from .once import MAX_ONCE_MARKS
from .store import Budget, StoreFull, StoreUnavailable

# KEYS: the budgets. ARGV: 1 = take (1) or only look (0), then count and period (µs) per key.
# Returns the 0-based indices of the budgets without a unit (nothing taken when any).
# Numbers are written with %.0f: Lua would print a large double in exponent form.
GCRA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local short, tats = {}, {}
for i, key in ipairs(KEYS) do
  local count, period = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tat = tat + math.floor(period / count)
  if tat - now > period then short[#short + 1] = i - 1 else tats[i] = tat end
end
if #short == 0 and ARGV[1] == '1' then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', math.max(1, math.ceil((tats[i] - now) / 1000)))
  end
end
return short
"""

# KEYS[1]; ARGV: count, period (µs), remaining.
SET_REMAINING = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local count, period, left = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if left >= count then redis.call('DEL', KEYS[1]) return 0 end
local used = (count - left) * math.floor(period / count)
redis.call('SET', KEYS[1], string.format('%.0f', now + used), 'PX', math.max(1, math.ceil(used / 1000)))
return 0
"""


# KEYS[1]: the set; ARGV: the key, its time to live (µs), the most live keys.
# Returns 1 (first use), 0 (seen, still live) or -1 (full of live keys: nothing added).
ONCE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local ttl, most = tonumber(ARGV[2]), tonumber(ARGV[3])
local stamp = string.format('%.0f', now)
local until_ = redis.call('ZSCORE', KEYS[1], ARGV[1])
if until_ and tonumber(until_) > now then return 0 end
if redis.call('ZCOUNT', KEYS[1], '(' .. stamp, '+inf') >= most then return -1 end
-- The first write: Redis over its maxmemory refuses it (then nothing is written).
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', stamp)
local ms = math.ceil(ttl / 1000)
if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end
return 1
"""
#: The sorted set of once-only keys (a DPoP proof's is a digest of its key and ``jti``).
ONCE_KEY = "pdp:once"


def redis_key(budget: Budget) -> str:
    tag = hashlib.blake2b(budget.key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"pdp:limit:{{{tag}}}:{budget.rule}"


GCRA_SHA = hashlib.sha1(GCRA.encode()).hexdigest()


def _call(budgets: Sequence[Budget], take: bool) -> tuple:
    """The arguments after the script (or its sha) of one check-and-take: numkeys, keys, argv."""
    args: list = [len(budgets)]
    args += [redis_key(b) for b in budgets]
    args.append(1 if take else 0)
    for b in budgets:
        args.append(b.count)
        args.append(b.period_ns // 1000)
    return tuple(args)


#: One round trip: the command (EVALSHA, or EVAL with the script's text) and each call's arguments.
Round = tuple[str, list[tuple]]


def _exchange(requests: Sequence[Sequence[Budget]], take: bool) -> Generator[Round, list, list[list[int]]]:
    """The round trips of a batch of check-and-takes, without I/O: yields what to send, is sent
    the replies (an exception object in place of a command's error), returns the indices
    without a unit per request. Every call goes by the script's sha; the calls Redis answers
    NOSCRIPT (it restarted empty) go once more with the script's text, which loads it. Only
    those: a batch that met the script half loaded (another server loaded it in between)
    takes no unit twice."""
    from redis.exceptions import NoScriptError

    calls = [_call(budgets, take) for budgets in requests]
    replies = yield "EVALSHA", calls
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        again = yield "EVAL", [calls[i] for i in missing]
        for i, reply in zip(missing, again):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return [[int(i) for i in reply] for reply in replies]


def _commands(round_: Round) -> list[tuple]:
    command, calls = round_
    head = (command, GCRA_SHA if command == "EVALSHA" else GCRA)
    return [head + call for call in calls]


def _client_options(timeout: float, retry, connection_class) -> dict[str, Any]:
    """No retries and no health checks: a late answer fails closed, and the next call connects
    again, so Redis coming back needs no restart. A new connection sends nothing before the
    script (RESP2: no ``HELLO``; no ``CLIENT SETINFO``): those are round trips a reconnection
    would spend of its deadline."""
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": retry,
               "retry_on_timeout": False, "health_check_interval": 0, "protocol": 2}
    if "driver_info" in inspect.signature(connection_class.__init__).parameters:  # newer redis-py
        options["driver_info"] = None
    else:
        options["lib_name"] = options["lib_version"] = None
    return options


class RedisStore:
    """A redis-py client (its pool is shared by the server's threads) whose every call must
    answer within ``timeout`` seconds."""

    def __init__(self, url: str, timeout: float, max_marks: int = MAX_ONCE_MARKS):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.timeout = timeout
        self._errors = (redis.RedisError, OSError)
        self._client = redis.Redis.from_url(url, **_client_options(timeout, Retry(NoBackoff(), 0),
                                                                  redis.connection.AbstractConnection))
        self._set = self._client.register_script(SET_REMAINING)
        self._once = self._client.register_script(ONCE)
        self.max_marks = max_marks

    def take(self, budgets: Sequence[Budget], take: bool = True) -> list[int]:
        return self.take_many([budgets], take)[0]

    def take_many(self, requests: Sequence[Sequence[Budget]], take: bool = True) -> list[list[int]]:
        steps = _exchange(requests, take)
        try:
            round_ = next(steps)
            while True:
                round_ = steps.send(self._send(round_))
        except StopIteration as done:
            return done.value
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from None

    def _send(self, round_: Round) -> list:
        """One round trip: a lone command, or a pipeline (without MULTI) of them."""
        commands = _commands(round_)
        if len(commands) == 1:
            try:
                return [self._client.execute_command(*commands[0])]
            except self._errors[0] as exc:  # a reply that is an error (NOSCRIPT): the exchange reads it
                if not _is_reply(exc):
                    raise
                return [exc]
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)

    def asyncio(self) -> AsyncRedisStore:
        """A client of the same Redis for an asyncio event loop (make and use it on that loop)."""
        return AsyncRedisStore(self.url, self.timeout)

    def set_remaining(self, budget: Budget, remaining: int) -> None:
        try:
            self._set(keys=[redis_key(budget)], args=[budget.count, budget.period_ns // 1000, max(0, remaining)])
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from None

    def first_use(self, key: str, ttl_ns: int) -> bool:
        try:
            answer = self._once(keys=[ONCE_KEY], args=[key, max(1, int(ttl_ns) // 1000), self.max_marks])
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from None
        if answer == -1:
            raise StoreFull(f"{ONCE_KEY} holds {self.max_marks} live keys")
        return answer == 1

    def close(self) -> None:
        self._client.close()


class AsyncRedisStore:
    """``RedisStore.take_many`` for an asyncio event loop (``redis.asyncio``): the same script,
    keys and replies, one round trip per batch; the whole exchange must end within ``timeout``
    seconds (a late one is cancelled, which drops its connection)."""

    def __init__(self, url: str, timeout: float):
        import redis
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.timeout = timeout
        self._errors = (redis.RedisError, OSError, asyncio.TimeoutError)
        self._client = redis.asyncio.Redis.from_url(url, **_client_options(
            timeout, Retry(NoBackoff(), 0), redis.asyncio.connection.AbstractConnection))

    async def take_many(self, requests: Sequence[Sequence[Budget]], take: bool = True) -> list[list[int]]:
        try:
            return await asyncio.wait_for(self._exchange(requests, take), self.timeout)
        except self._errors as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from None

    async def _exchange(self, requests: Sequence[Sequence[Budget]], take: bool) -> list[list[int]]:
        steps = _exchange(requests, take)
        try:
            round_ = next(steps)
            while True:
                round_ = steps.send(await self._send(round_))
        except StopIteration as done:
            return done.value

    async def _send(self, round_: Round) -> list:
        commands = _commands(round_)
        if len(commands) == 1:
            try:
                return [await self._client.execute_command(*commands[0])]
            except self._errors[0] as exc:
                if not _is_reply(exc):
                    raise
                return [exc]
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute(raise_on_error=False)

    async def close(self) -> None:
        await self._client.aclose()


def _is_reply(exc: Exception) -> bool:
    """An error Redis answered (kept as that command's reply), not a failure to talk to it."""
    from redis.exceptions import ResponseError

    return isinstance(exc, ResponseError)
