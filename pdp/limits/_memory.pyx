# cython: language_level=3
"""The compiled twin of ``memory.LockedMemoryStore``, and the limited ``decide`` built on it.

Same budgets, same answers, no lock: each check-and-take reads and writes the table in C
while holding the GIL, and calls no Python code between the read and the write (no Python
clock, no allocation the cyclic collector could run a finalizer from), so no other thread can
run in between. That makes a limited decision on the in-memory store cost about what the
store's own dictionary lookups cost (bench/LIMITS.md); a lock alone cost more on the loaded
machine it was measured on. ``memory.py`` uses the locked store where there is no GIL.
"""

cdef extern from *:
    """
    #ifndef PDP_SOURCE_DIGEST
    #define PDP_SOURCE_DIGEST ""
    #endif
    """
    const char* PDP_SOURCE_DIGEST

#: The sha256 of the .pyx this module was built from (setup.py): pdp/extension.py does not
#: use a build whose source has changed since.
SOURCE_DIGEST = PDP_SOURCE_DIGEST.decode("ascii")

from cpython.dict cimport PyDict_Next
from cpython.long cimport PyLong_AsLongLong
from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.ref cimport Py_XDECREF
from libc.stdlib cimport free, malloc
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from ..decision import DENY, Decision, failed_closed
from .once import MAX_ONCE_MARKS, OnceMarks

cdef extern from "Python.h":
    object PyType_GenericAlloc(type t, Py_ssize_t items)
    void PyTuple_SET_ITEM(object t, Py_ssize_t i, object o)  # steals a reference to o
    void Py_INCREF(object o)

cdef type _DECISION = Decision
cdef str _DENY = DENY


cdef object _denied(object decision, tuple reasons):
    """``decision`` made a DENY with ``reasons`` (its errors, revision and time kept): a
    Decision (a tuple subclass) filled in place, as the compiled evaluator makes them."""
    cdef object d = PyType_GenericAlloc(_DECISION, 5)
    cdef Py_ssize_t i
    Py_INCREF(_DENY)
    PyTuple_SET_ITEM(d, 0, _DENY)
    Py_INCREF(reasons)
    PyTuple_SET_ITEM(d, 1, reasons)
    for i in range(2, 5):
        item = (<tuple>decision)[i]
        Py_INCREF(item)
        PyTuple_SET_ITEM(d, i, item)
    return d


cdef enum:
    # The denials kept per limit (its reasons per key, see FastSettle.settled); past this
    # many keys the table starts again.
    DENIALS_KEPT = 4096
    # Full budgets are swept out once the table has grown past this many keys (then past
    # twice what the last sweep kept), as memory.LockedMemoryStore does.
    FIRST_SWEEP = 4096


cdef inline long long _monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)  # what time.monotonic_ns reads
    return ts.tv_sec * 1000000000LL + ts.tv_nsec


cdef class MemoryStore:
    """GCRA budgets in one process (see ``memory.LockedMemoryStore`` for the algorithm):
    ``take``, ``take_one``, ``take_many``, ``set_remaining``, ``remaining``, ``first_use``,
    ``len()``. ``clock``: a function giving nanoseconds (tests); the monotonic clock by default."""

    cdef dict _rules  # rule id -> {key -> theoretical arrival time, ns}; a rule's table stays
    cdef Py_ssize_t _size  # keys in all the tables
    cdef object _clock
    cdef Py_ssize_t _sweep_at
    cdef object _marks  # once-only keys (OnceMarks): rare next to budgets, so in Python

    def __init__(self, clock=None, max_marks=MAX_ONCE_MARKS):
        self._rules = {}
        self._size = 0
        self._clock = clock
        self._sweep_at = FIRST_SWEEP
        self._marks = OnceMarks(max_marks) if clock is None else OnceMarks(max_marks, clock)

    cdef inline long long _now(self) except? -1:
        return _monotonic() if self._clock is None else self._clock()

    cdef dict table(self, str rule):
        """The budgets of one limit rule, by key (made on first use, kept for good)."""
        cdef object found = self._rules.get(rule)
        if found is None:
            found = self._rules[rule] = {}
        return <dict>found

    cdef bint take_key(self, dict table, str key, long long count, long long period, bint take) except -1:
        """``take_one`` of the budget ``key`` of ``table`` (a rule's): True when it had a unit."""
        cdef long long now = self._now()
        # From here to the write: C only, under the GIL.
        cdef object found = table.get(key)
        cdef long long tat = now if found is None else <long long>found
        cdef long long new = (tat if tat > now else now) + period // count
        if new - now > period:
            return False
        if take:
            table[key] = new
            if found is None:
                self._size += 1
                if self._size > self._sweep_at:
                    self._sweep(now)
        return True

    def take_one(self, str rule, str key, long long count, long long period, bint take=True) -> bool:
        """``take`` of one budget, without building it: True when it had a unit."""
        return self.take_key(self.table(rule), key, count, period, take)

    def take(self, budgets, bint take=True) -> list:
        """Take one unit from every budget, all or nothing; the indices of those without one."""
        cdef Py_ssize_t n = len(budgets), i
        if n == 0:
            return []
        if n == 1:
            rule, key, count, period = budgets[0]
            return [] if self.take_key(self.table(rule), key, count, period, take) else [0]
        # Everything that allocates comes first: the tables, the numbers, the answer list.
        cdef list tables = [self.table(b[0]) for b in budgets]
        cdef list keys = [<str>b[1] for b in budgets]
        cdef long long *news = <long long *>malloc(n * sizeof(long long))
        cdef long long *intervals = <long long *>malloc(n * sizeof(long long))
        cdef long long *periods = <long long *>malloc(n * sizeof(long long))
        cdef char *fresh = <char *>malloc(n)
        cdef list short = []
        cdef long long now, tat
        cdef object found
        if news == NULL or intervals == NULL or periods == NULL or fresh == NULL:
            free(news); free(intervals); free(periods); free(fresh)
            raise MemoryError()
        try:
            for i in range(n):
                periods[i] = budgets[i][3]
                intervals[i] = periods[i] // <long long>budgets[i][2]  # store.gcra_interval
            now = self._now()
            # From here to the writes: C only, under the GIL (list.append only reallocates).
            for i in range(n):
                found = (<dict>tables[i]).get(keys[i])
                fresh[i] = found is None
                tat = now if found is None else <long long>found
                news[i] = (tat if tat > now else now) + intervals[i]
                if news[i] - now > periods[i]:
                    short.append(i)
            if not short and take:
                for i in range(n):
                    (<dict>tables[i])[keys[i]] = news[i]
                    self._size += fresh[i]  # the budgets of one request are of distinct rules
                if self._size > self._sweep_at:
                    self._sweep(now)
            return short
        finally:
            free(news); free(intervals); free(periods); free(fresh)

    def take_many(self, requests, bint take=True) -> list:
        """``take`` for each request's budgets, in order (a batch)."""
        return [self.take(budgets, take) for budgets in requests]

    def set_remaining(self, budget, long long remaining) -> None:
        """Set the units left in one budget (test suites)."""
        rule, key, count, period = budget
        cdef dict table = self.table(rule)
        cdef long long interval = <long long>period // <long long>count  # store.gcra_interval
        cdef long long left = max(0, min(<long long>count, remaining))
        cdef long long now = self._now()
        if left == count:
            if table.pop(key, None) is not None:
                self._size -= 1
        else:
            if key not in table:
                self._size += 1
            table[key] = now + (count - left) * interval

    def remaining(self, budget) -> int:
        """Units left in one budget now."""
        rule, key, count, period = budget
        cdef long long interval = <long long>period // <long long>count  # store.gcra_interval
        cdef long long now = self._now()
        cdef object found = self.table(rule).get(key)
        cdef long long tat = now if found is None else <long long>found
        cdef long long used = max(0, tat - now)
        return max(0, min(<long long>count, (<long long>period - used) // interval))

    def first_use(self, str key, long long ttl_ns) -> bool:
        """A once-only key (pdp/limits/once.py): True the first time it is seen."""
        return self._marks.first_use(key, ttl_ns)

    cdef int _sweep(self, long long now) except -1:
        """Forget full budgets (TAT past). Nothing here allocates an object the cyclic
        collector tracks (no finalizer can run, so no other thread), but the lists of keys
        made before the deletions."""
        cdef Py_ssize_t pos, i
        cdef PyObject *key
        cdef PyObject *tat
        cdef list tables = list(self._rules.values())
        cdef list fulls = [[] for _ in tables]
        cdef dict table
        cdef list full
        for i in range(len(tables)):
            table, full, pos = tables[i], fulls[i], 0
            while PyDict_Next(table, &pos, &key, &tat):
                if PyLong_AsLongLong(<object>tat) <= now:
                    full.append(<object>key)
        for i in range(len(tables)):
            table, full = tables[i], fulls[i]
            for k in full:
                del table[k]
            self._size -= len(full)
        self._sweep_at = max(FIRST_SWEEP, 2 * self._size)
        return 0

    def __len__(self) -> int:
        return self._size

    def close(self) -> None:
        pass


ctypedef object (*_DecideInto)(object evaluator, object request, PyObject** claims)


cdef class FastSettle:
    """``Limiter.settle`` and ``settle_many`` on this module's MemoryStore: the common case (one
    limit met, one string key) taken here in C; everything else goes to ``Limiter.settle``
    (which a batch on this store equals request by request: its units are taken in order)."""

    cdef object settle_slow, limited
    cdef MemoryStore store
    cdef list tables  # per limit index: its table in ``store``
    # Per limit index: a key whose budget ran out ⇒ the reasons of its denial (a Reason per
    # key, the same every time: built once by Limiter.limited_one, not per denied request).
    cdef list denials
    cdef long long *counts
    cdef long long *periods
    cdef bint take

    def __cinit__(self):
        self.counts = self.periods = NULL

    def __init__(self, limiter):
        self.settle_slow = limiter.settle_slow
        self.limited = limiter.limited_one
        self.take = limiter.take
        self.store = <MemoryStore?>limiter.store
        cdef Py_ssize_t n = len(limiter.limits), i
        self.counts = <long long *>malloc(max(n, 1) * sizeof(long long))
        self.periods = <long long *>malloc(max(n, 1) * sizeof(long long))
        if self.counts == NULL or self.periods == NULL:
            raise MemoryError()
        for i in range(n):
            self.counts[i] = limiter.limits[i].count
            self.periods[i] = limiter.limits[i].period_ns
        self.tables = [self.store.table(limit.id) for limit in limiter.limits]
        self.denials = [{} for _ in range(n)]

    def __dealloc__(self):
        free(self.counts)
        free(self.periods)

    cdef object settled(self, object decision, object claims):
        """The decision once ``claims`` (not None) are settled."""
        cdef Py_ssize_t index
        try:
            if len(<list>claims) == 1:
                index, values = (<list>claims)[0]
                if type(values) is tuple and len(<tuple>values) == 1:
                    value = (<tuple>values)[0]
                    if type(value) is str and not (<str>value).startswith("["):
                        if self.store.take_key(<dict>self.tables[index], <str>value, self.counts[index],
                                               self.periods[index], self.take):
                            return decision
                        return self.denial(index, <str>value, decision, claims)
            return self.settle_slow(decision, claims)
        except Exception as exc:  # a bug: fail closed, as every decide does
            return failed_closed(exc, decision.revision)

    cdef object denial(self, Py_ssize_t index, str key, object decision, object claims):
        """The DENY of a request whose one claim (limit ``index``, ``key``) found no unit."""
        cdef dict kept = <dict>self.denials[index]
        reasons = kept.get(key)
        if reasons is not None and type(decision) is _DECISION:
            return _denied(decision, <tuple>reasons)
        denied = self.limited(decision, claims)
        if len(kept) >= DENIALS_KEPT:
            kept.clear()
        kept[key] = denied[1]
        return denied

    def settle(self, decision, claims):
        return decision if claims is None else self.settled(decision, claims)

    def settle_many(self, pairs) -> list:
        cdef list out = []
        for decision, claims in pairs:
            out.append(decision if claims is None else self.settled(decision, claims))
        return out


cdef class LimitedDecide:
    """``engine.decide`` for a policy set with limit rules (its ``decide`` method): the
    decision and its claims (from the compiled evaluator's C entry ``claims_capsule`` when
    ``evaluator`` is given, else ``claims_of(request)``: the evaluator's ``decide_claims``, or
    the engine's behind its token gate), then the claims settled by ``limiter.settle`` (the
    MemoryStore's C path, FastSettle, when the limiter has one)."""

    cdef object claims_of, settle, evaluator
    cdef FastSettle fast
    cdef _DecideInto decide_into

    def __init__(self, claims_of, limiter, evaluator=None):
        self.claims_of = claims_of
        self.settle = limiter.settle
        fast = getattr(limiter, "fast", None)
        self.fast = fast if type(fast) is FastSettle else None
        self.decide_into = NULL
        capsule = getattr(evaluator, "claims_capsule", None)
        if capsule is not None:
            self.decide_into = <_DecideInto>PyCapsule_GetPointer(capsule, "pdp.runtime._ceval.decide_into")
            self.evaluator = evaluator

    def decide(self, request):
        cdef PyObject* found = NULL
        if self.decide_into != NULL:
            decision = self.decide_into(self.evaluator, request, &found)  # RequestError goes to the caller
            if found == NULL:
                return decision
            claims = <object>found
            Py_XDECREF(found)  # (claims holds it now)
        else:
            decision, claims = self.claims_of(request)
            if claims is None:
                return decision
        if self.fast is not None:
            return self.fast.settled(decision, claims)
        try:
            return self.settle(decision, claims)
        except Exception as exc:  # a bug: fail closed, as every decide does
            return failed_closed(exc, decision.revision)
