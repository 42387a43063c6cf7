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
"""

from __future__ import annotations

import hashlib
from typing import Sequence

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


def _call(budgets: Sequence[Budget], take: bool) -> tuple[list[str], list]:
    keys = [redis_key(b) for b in budgets]
    args: list = [1 if take else 0]
    for b in budgets:
        args.append(b.count)
        args.append(b.period_ns // 1000)
    return keys, args


class RedisStore:
    """A redis-py client (its pool is shared by the server's threads) whose every call must
    answer within ``timeout`` seconds; no retries: a late answer fails closed, and the next
    call connects again, so Redis coming back needs no restart."""

    def __init__(self, url: str, timeout: float, max_marks: int = MAX_ONCE_MARKS):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.timeout = timeout
        self._errors = (redis.RedisError, OSError)
        self._no_script = redis.exceptions.NoScriptError
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
                                            health_check_interval=0)
        self._gcra = self._client.register_script(GCRA)
        self._set = self._client.register_script(SET_REMAINING)
        self._once = self._client.register_script(ONCE)
        self.max_marks = max_marks

    def take(self, budgets: Sequence[Budget], take: bool = True) -> list[int]:
        keys, args = _call(budgets, take)
        try:
            return list(self._gcra(keys=keys, args=args))
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from None

    def take_many(self, requests: Sequence[Sequence[Budget]], take: bool = True) -> list[list[int]]:
        if len(requests) == 1:
            return [self.take(requests[0], take)]
        calls = [_call(budgets, take) for budgets in requests]
        try:
            try:
                return self._pipelined(calls)
            except self._no_script:  # Redis restarted empty: load the script, once
                self._client.script_load(GCRA)
                return self._pipelined(calls)
        except self._errors as exc:
            raise StoreUnavailable(str(exc)) from None

    def _pipelined(self, calls: list) -> list[list[int]]:
        # EVALSHA by hand: a pipeline given Script objects asks SCRIPT EXISTS first, one more round trip.
        pipe = self._client.pipeline(transaction=False)
        sha = self._gcra.sha
        for keys, args in calls:
            pipe.evalsha(sha, len(keys), *keys, *args)
        return [list(r) for r in pipe.execute()]

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
