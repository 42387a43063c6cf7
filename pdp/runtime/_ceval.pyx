# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled evaluator: (Program, request dict) ⇒ Decision, in C.

Twin of pyeval.py: it links each node of the Program into a typed extension object once at
load, then evaluates with C-level virtual calls and no Python frames per node. Errors travel
as ``_Err`` values (no exceptions on the hot path). Only the common, simple cases run here;
anything rarer (mixed types, errors, built-ins) calls the shared Python helpers, so the
wording and the semantics are those of the reference evaluator by construction.
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

from sys import intern
from types import MemberDescriptorType

cimport cython

from libc.math cimport fabs, floor, isfinite
from libc.stdio cimport snprintf
from libc.stdlib cimport calloc, free, malloc
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC, CLOCK_REALTIME

from .. import clock, operators, times
from ..builtins import BUILTINS, cidr_set
from ..compile import ir
from ..compile.verify import verify
from ..decision import (FAILED_CLOSED, MAX_REASON_CHARS, Decision, Reason, RuleError, DEFAULT_REASON, cap_reason,
                        failed_closed, frozen_map)
from ..errors import EvalError, RequestError
from ..glob import compile_glob
from ..request import (candidate_probe, candidate_value, indexed_request, parse_request, INT_MIN, INT_MAX,
                       MAX_DEPTH, MAX_LIST_ITEMS, MAX_VALUES, REQUIRED, ROOT_KEYS, TOKEN_ROOT)
from ..values import CidrSet, parse_time, render, type_name, equal
from ..access import index_value, missing, not_a_map, not_boolean

cdef object _UNSET = object()
cdef str _ALLOW = "ALLOW"
cdef str _DENY = "DENY"
cdef tuple _DEFAULT_REASONS = (DEFAULT_REASON,)
cdef tuple _EMPTY = ()
cdef object _EQUAL = equal
cdef dict _OPERATORS = operators.OPERATORS
cdef object _INT_MIN = INT_MIN
cdef object _INT_MAX = INT_MAX
cdef Py_ssize_t _MAX_REASON_CHARS = MAX_REASON_CHARS
cdef Py_ssize_t _SCAN_PAIRS = 16 * operators.SCAN_PAIRS  # a scan in C is ~16x cheaper than in Python
cdef type _DECISION = Decision
cdef type _CIDR_SET = CidrSet


cdef extern from "Python.h":
    object PyType_GenericAlloc(type t, Py_ssize_t items)
    void PyTuple_SET_ITEM(object t, Py_ssize_t i, object o)  # steals a reference to o
    void Py_INCREF(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    Py_ssize_t PyUnicode_FindChar(object s, Py_UCS4 ch, Py_ssize_t start, Py_ssize_t end, int direction) except -2


cdef inline object _decision(str decision, tuple reasons, tuple errors, str revision, long long eval_ns):
    """A Decision (a tuple subclass) filled in place: no argument tuple, no tuple.__new__ call."""
    cdef object d = PyType_GenericAlloc(_DECISION, 5)
    cdef object ns = eval_ns
    Py_INCREF(decision)
    PyTuple_SET_ITEM(d, 0, decision)
    Py_INCREF(reasons)
    PyTuple_SET_ITEM(d, 1, reasons)
    Py_INCREF(errors)
    PyTuple_SET_ITEM(d, 2, errors)
    Py_INCREF(revision)
    PyTuple_SET_ITEM(d, 3, revision)
    Py_INCREF(ns)
    PyTuple_SET_ITEM(d, 4, ns)
    return d


# Reasons and errors are plain slotted records (decision._Record): made here as object.__new__
# would make them, their fields set one by one, without running __init__ (a Python frame).
assert Reason.__slots__ == ("rule", "effect", "message", "annotations")
assert RuleError.__slots__ == ("rule", "message")
cdef type _REASON = Reason
cdef type _RULE_ERROR = RuleError


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    int _T_OBJECT_EX "T_OBJECT_EX"


cdef Py_ssize_t _slot_offset(type record, str name) except -1:
    """Where a record's ``__slots__`` field ``name`` lives in its objects (its member
    descriptor's offset): the fields are set there, past the records' own __setattr__, which
    refuses (they are immutable), and without a generic setattr's look-ups (~140
    instructions a field)."""
    cdef object d = record.__dict__[name]
    if type(d) is not MemberDescriptorType or (<PyMemberDescrObject*>d).d_member.type != _T_OBJECT_EX:
        raise TypeError(f"{record.__name__}.{name} is not a plain slot")
    return (<PyMemberDescrObject*>d).d_member.offset


cdef Py_ssize_t _REASON_RULE = _slot_offset(Reason, "rule")
cdef Py_ssize_t _REASON_EFFECT = _slot_offset(Reason, "effect")
cdef Py_ssize_t _REASON_MESSAGE = _slot_offset(Reason, "message")
cdef Py_ssize_t _REASON_ANNOTATIONS = _slot_offset(Reason, "annotations")
cdef Py_ssize_t _ERROR_RULE = _slot_offset(RuleError, "rule")
cdef Py_ssize_t _ERROR_MESSAGE = _slot_offset(RuleError, "message")


cdef inline void _fill(object record, Py_ssize_t offset, object value) noexcept:
    """Set a field of a record just allocated (its slots are NULL)."""
    Py_INCREF(value)
    (<PyObject**>(<char*><PyObject*>record + offset))[0] = <PyObject*>value


cdef object _reason_of(str rule, str effect, str message, object annotations):
    cdef object r = PyType_GenericAlloc(_REASON, 0)
    _fill(r, _REASON_RULE, rule)
    _fill(r, _REASON_EFFECT, effect)
    _fill(r, _REASON_MESSAGE, message)
    _fill(r, _REASON_ANNOTATIONS, annotations)  # the rule's FrozenMap
    return r


cdef object _rule_error(str rule, str message):
    cdef object e = PyType_GenericAlloc(_RULE_ERROR, 0)
    _fill(e, _ERROR_RULE, rule)
    _fill(e, _ERROR_MESSAGE, message)
    return e


cdef inline long long _nanos(int clock):
    cdef timespec ts
    clock_gettime(clock, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef extern from "Python.h":
    int _ukind "PyUnicode_KIND"(object s)
    void* _udata "PyUnicode_DATA"(object s)
    Py_UCS4 _uread "PyUnicode_READ"(int kind, void* data, Py_ssize_t i)


cdef inline Py_UCS4 _at(str s, Py_ssize_t i) noexcept:
    """``s[i]`` (0 <= i < len(s)) read in place: no index checks, no conversion call."""
    return _uread(_ukind(s), _udata(s), i)


# ---- times: the common RFC 3339 shapes in C; anything else goes to values.parse_time -----------

cdef extern from *:
    """
    /* YYYY-MM-DDTHH:MM:SS(Z|+HH:MM|-HH:MM), the separator T, t or a space, read as the bytes of
       a one-byte str: 1 with the seconds from the epoch in *out, 0 for any other text. The
       same checks as values.parse_time for this shape; a time it refuses (a day past its
       month, an offset out of range) is 0 here too, and Python words the error. Straight-line
       digit reads: a parse was ~280 instructions as loops over the fields. */
    #include <stdint.h>
    #include <string.h>
    #define PDP_D(i) ((int)s[i] - '0')
    #define PDP_BAD(i) ((unsigned)((int)s[i] - '0') > 9u)
    static const int pdp_month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    static inline long long pdp_days_from_civil(long long y, int m, int d) {
        y -= m <= 2;
        long long era = (y >= 0 ? y : y - 399) / 400;
        long long yoe = y - era * 400;
        long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
    }

    static inline int pdp_time_parse(const unsigned char *s, Py_ssize_t n, long long *out) {
        if (PDP_BAD(0) | PDP_BAD(1) | PDP_BAD(2) | PDP_BAD(3) | PDP_BAD(5) | PDP_BAD(6) | PDP_BAD(8)
                | PDP_BAD(9) | PDP_BAD(11) | PDP_BAD(12) | PDP_BAD(14) | PDP_BAD(15) | PDP_BAD(17) | PDP_BAD(18))
            return 0;
        unsigned char sep = s[10], zone = s[19];
        if (s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' || !(sep == 'T' || sep == 't' || sep == ' '))
            return 0;
        int year = PDP_D(0) * 1000 + PDP_D(1) * 100 + PDP_D(2) * 10 + PDP_D(3);
        int month = PDP_D(5) * 10 + PDP_D(6), day = PDP_D(8) * 10 + PDP_D(9);
        int hour = PDP_D(11) * 10 + PDP_D(12), minute = PDP_D(14) * 10 + PDP_D(15);
        int second = PDP_D(17) * 10 + PDP_D(18);
        int offset = 0;
        if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60)
            return 0;
        int dim = pdp_month_days[month - 1];
        if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
            dim = 29;
        if (day > dim) return 0;
        if (n == 20) {
            if (zone != 'Z' && zone != 'z') return 0;
        } else {
            if ((zone != '+' && zone != '-') || s[22] != ':'
                    || (PDP_BAD(20) | PDP_BAD(21) | PDP_BAD(23) | PDP_BAD(24)))
                return 0;
            int oh = PDP_D(20) * 10 + PDP_D(21), om = PDP_D(23) * 10 + PDP_D(24);
            if (oh > 23 || om > 59) return 0;  /* out of range: let the Python path say so */
            offset = oh * 3600 + om * 60;
            if (zone == '+') offset = -offset;
        }
        if (second == 60) second = 59;  /* a leap second counts as :59 (as values.parse_time does) */
        *out = pdp_days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second + offset;
        return 1;
    }

    /* The times parsed last, by their text: a request's time, its credential's issue and
       expiry times recur (a second's requests, a token's), and a look-up here (the text as
       four 8-byte words: its 20 or 25 bytes all covered, compared whole) is ~25 instructions
       where a parse is ~220. Only texts that parse are kept; a slot is overwritten by the
       next text of its hash. Read and written with no Python code between (the GIL); not
       used on a free-threaded build. */
    typedef struct { uint64_t w[4]; long long t; Py_ssize_t n; } pdp_time_kept;
    #define PDP_TIMES_KEPT 64
    static pdp_time_kept pdp_times_kept[PDP_TIMES_KEPT];  /* n 0: empty */

    static inline int pdp_time_c(PyObject *x, long long *out) {
        if (!PyUnicode_CheckExact(x) || PyUnicode_KIND(x) != PyUnicode_1BYTE_KIND) return 0;
        Py_ssize_t n = PyUnicode_GET_LENGTH(x);
        if (n != 20 && n != 25) return 0;
        const unsigned char *s = PyUnicode_1BYTE_DATA(x);
    #ifdef Py_GIL_DISABLED
        return pdp_time_parse(s, n, out);
    #else
        uint64_t w[4];
        memcpy(&w[0], s, 8);
        memcpy(&w[1], s + 8, 8);
        memcpy(&w[2], s + 12, 8);  /* bytes 12..19 */
        memcpy(&w[3], s + n - 8, 8);  /* the last 8: bytes 17..24 of a time with an offset */
        uint64_t h = (w[0] ^ (w[1] * 0x9E3779B97F4A7C15ULL) ^ (w[2] * 0xC2B2AE3D27D4EB4FULL)
                      ^ (w[3] * 0x165667B19E3779F9ULL)) * 0xD6E8FEB86659FD93ULL;
        pdp_time_kept *e = &pdp_times_kept[h >> 58];  /* 64 */
        if (e->n == n && e->w[0] == w[0] && e->w[1] == w[1] && e->w[2] == w[2] && e->w[3] == w[3]) {
            *out = e->t;
            return 1;
        }
        if (!pdp_time_parse(s, n, out)) return 0;
        e->w[0] = w[0]; e->w[1] = w[1]; e->w[2] = w[2]; e->w[3] = w[3];
        e->t = *out;
        e->n = n;
        return 1;
    #endif
    }
    """
    bint _time_c "pdp_time_c"(object x, long long* out) noexcept


cdef object _time_of(object x):
    """values.parse_time, with its common shape done in C (_time_c)."""
    cdef long long t
    if _time_c(x, &t):
        return t
    return parse_time(x)


@cython.no_gc  # holds a string, or a wording function and request values: no cycles
cdef class _Err:
    """An evaluation error, returned (not raised) through the node tree.

    Most errors are only tested (``defined(...)``, a guard that failed), never reported, so
    an error whose wording costs (a key quoted as JSON) keeps the function that words it and
    its arguments, and is worded when its message is first read."""
    cdef str _message
    cdef object _word
    cdef tuple _args

    def __cinit__(self, str message=None):
        self._message = message

    @property
    def message(self):
        return self.text()

    cdef str text(self):
        if self._message is None:
            self._message = self._word(*self._args)
            self._word = self._args = None
        return self._message


cdef inline _Err _from(object err):
    return _Err(err.message)


cdef inline _Err _lazy(object word, tuple args):
    cdef _Err e = _Err.__new__(_Err)
    e._word, e._args = word, args
    return e


def _index_message(value, key, str obj_text):
    try:
        index_value(value, key, obj_text)
    except EvalError as err:
        return err.message
    raise AssertionError("an index that did not fail")  # pragma: no cover


# ---- the per-request context -------------------------------------------------------------

from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF

cdef extern from "Python.h":
    # On PyObject*: no reference counting added by Cython around them.
    void _incref "Py_INCREF"(PyObject* o) noexcept
    void _xdecref "Py_XDECREF"(PyObject* o) noexcept
    PyObject* _tuple_item "PyTuple_GET_ITEM"(PyObject* t, Py_ssize_t i) noexcept
    PyObject* Py_None  # (None, never freed: held borrowed, with no reference counted)

cdef extern from *:
    """
    #define pdp_tuple_items(t) (((PyTupleObject *)(t))->ob_item)
    """
    PyObject** _tuple_items "pdp_tuple_items"(PyObject* t) noexcept
from cpython.pycapsule cimport PyCapsule_New

cdef enum:
    _INLINE_SLOTS = 64  # CACHED slots held in the context object itself (kept per evaluator)

@cython.final
@cython.no_gc  # holds request values only: no cycles
cdef class _Slots:
    """The CACHED slots past the inline ones, for one request at a time: a C array of all of
    them, with the numbers of those filled so that only they are cleared. The evaluator keeps
    a few between requests: a program of 10,000 rules has thousands of slots, and making and
    freeing a list that long on every request was most of a decision's cost (callgrind)."""
    cdef PyObject** values  # NULL when empty, else an owned reference
    cdef Py_ssize_t* filled
    cdef Py_ssize_t count

    def __dealloc__(self):
        self.clear()
        free(self.values)
        free(self.filled)

    cdef inline void clear(self) noexcept:
        cdef Py_ssize_t i, slot
        for i in range(self.count):
            slot = self.filled[i]
            Py_XDECREF(self.values[slot])
            self.values[slot] = NULL
        self.count = 0


cdef _Slots _new_slots(Py_ssize_t size):
    cdef _Slots s = _Slots.__new__(_Slots)
    s.values = <PyObject**>calloc(size + 1, sizeof(PyObject*))
    s.filled = <Py_ssize_t*>malloc((size + 1) * sizeof(Py_ssize_t))
    if s.values == NULL or s.filled == NULL:
        raise MemoryError()
    return s


cdef enum:
    _SPARES = 4  # _Slots (or _Flat) an evaluator keeps for the next requests: one per request decided at once


@cython.final
@cython.no_gc  # holds _Slots or _Flat (C arrays of request values): no cycles
cdef class _Spares:
    """Per-request scratch objects (_Slots, _Flat) kept between requests: a C stack of at most
    _SPARES. (A list here shrank its array to nothing at each pop and grew it again at each
    append: two reallocs a request and a kind, ~1,000 instructions a library decision.)"""
    cdef PyObject* items[_SPARES]  # owned references below ``count``
    cdef int count

    def __dealloc__(self):
        while self.count > 0:
            self.count -= 1
            Py_XDECREF(self.items[self.count])

    cdef inline object take(self):
        """The last object given back, or None."""
        if self.count == 0:
            return None
        self.count -= 1
        cdef object o = <object>self.items[self.count]
        Py_XDECREF(self.items[self.count])  # (``o`` holds it now)
        return o

    cdef inline void give(self, object o) noexcept:
        if self.count < _SPARES:
            Py_INCREF(o)
            self.items[self.count] = <PyObject*>o
            self.count += 1


@cython.final  # direct (inlinable) method calls
@cython.no_gc  # made per request; references request data only, never itself: no cycles
cdef class _Context:
    # The request's roots in ir.ROOTS order, as owned references: identity, action, resource,
    # context (dicts; NULL before the first request), then the verified token (a dict; NULL
    # when the request has none). An array, so that a path reads its root with one index
    # (no branch per root, no reference counting: set_roots and set_token own them).
    cdef PyObject* roots[5]
    cdef double arrival
    # The clock bound (pdp.clock), when ``bounded``: a context made without setting it (its
    # fields start at zero) takes context.time as given.
    cdef bint bounded
    cdef double max_skew
    # CACHED slots: the first _INLINE_SLOTS in the context itself (NULL when empty; owned
    # references, the first ``filled`` of inline_filled naming them, so that a request clears
    # only the slots it filled), no allocation per request; the others in ``more``
    # (None until the first is used), taken from ``spare`` (the evaluator's) and given back.
    cdef PyObject* inline_slots[_INLINE_SLOTS]
    cdef unsigned char inline_filled[_INLINE_SLOTS]
    cdef Py_ssize_t filled
    cdef _Slots more
    cdef _Spares spare
    cdef Py_ssize_t slots
    # The request time, read when first needed: now_kind 0 not yet, 1 whole seconds in now_int
    # (context.time, the common shape), 2 seconds in now_float (the server clock), 3 now_value
    # (an _Err, or another time values.parse_time read); now_value is the time as an object,
    # _UNSET until asked for.
    cdef int now_kind
    cdef long long now_int
    cdef double now_float
    cdef object now_value
    cdef list errors  # RuleErrors met so far (None until the first)
    # The address text ``in cidr(...)`` parsed last (held, so no other object takes its
    # identity): 4 or 6 with its value in ip_hi/ip_lo, or 0 when ipaddress must tell.
    cdef object ip_text
    cdef int ip_kind
    cdef unsigned long long ip_hi, ip_lo

    def __dealloc__(self):
        self.clear_slots()
        self.release_roots()

    cdef inline void set_roots(self, tuple roots) noexcept:
        """Hold the four roots (ROOT_KEYS order) of the next request; the token is kept."""
        cdef int i
        cdef PyObject* old
        for i in range(4):
            old = self.roots[i]
            self.roots[i] = _tuple_item(<PyObject*>roots, i)
            _incref(self.roots[i])
            _xdecref(old)

    cdef inline void take_roots(self, PyObject** owned) noexcept:
        """set_roots of four new references (``_plain_roots``), which the context takes over."""
        cdef int i
        cdef PyObject* old
        for i in range(4):
            old = self.roots[i]
            self.roots[i] = owned[i]
            _xdecref(old)

    cdef inline void set_token(self, object token) noexcept:
        """The verified token of the next request (None: none)."""
        cdef PyObject* old = self.roots[4]
        if token is None:
            self.roots[4] = NULL
        else:
            self.roots[4] = <PyObject*>token
            _incref(<PyObject*>token)
        _xdecref(old)

    cdef inline void release_roots(self) noexcept:
        """Drop the request's roots and token (a context kept for the next request holds none)."""
        cdef int i
        cdef PyObject* old
        for i in range(5):
            old = self.roots[i]
            self.roots[i] = NULL
            _xdecref(old)

    cdef inline void clear_slots(self) noexcept:
        cdef Py_ssize_t i
        cdef unsigned char slot
        for i in range(self.filled):
            slot = self.inline_filled[i]
            _xdecref(self.inline_slots[slot])
            self.inline_slots[slot] = NULL
        self.filled = 0
        if self.more is not None:
            self.more.clear()
            if self.spare is not None:
                self.spare.give(self.more)
            self.more = None

    cdef inline _Slots more_slots(self):
        if self.more is None:
            self.take_slots()
        return self.more

    cdef int take_slots(self) except -1:
        cdef object kept = self.spare.take() if self.spare is not None else None
        self.more = _new_slots(self.slots) if kept is None else <_Slots>kept
        return 0

    cdef inline object root(self, int index):
        """Root ``index`` (ir.ROOTS order); None: the token of a request without one."""
        cdef PyObject* r = self.roots[index]
        return None if r == NULL else <object>r

    cdef inline int now_c(self) except -1:
        """now_kind, the request time read first if need be."""
        if self.now_kind == 0:
            self.read_now()
        return self.now_kind

    cdef int read_now(self) except -1:
        cdef long long t
        cdef double server
        given = _get(<dict>self.roots[3], "time", _UNSET)
        if given is _UNSET:
            # The server clock, read when first needed: the same instant as the request's
            # arrival to within the evaluation's microseconds, and most requests never ask.
            self.now_float = self.arrival if self.arrival >= 0 else _nanos(CLOCK_REALTIME) / 1e9
            self.now_kind = 2
            return 0
        if _time_c(given, &t):
            if not self.bounded:
                self.now_int, self.now_kind = t, 1
                return 0
            server = self.arrival if self.arrival >= 0 else _nanos(CLOCK_REALTIME) / 1e9
            # Python's int - float is float(int) - float: the same test as pdp.clock's, which is
            # called only to word the error.
            if -self.max_skew <= <double>t - server <= self.max_skew:
                self.now_int, self.now_kind = t, 1
                return 0
        cdef object now
        try:
            now = _time_of(given)
        except EvalError as err:
            now = _Err("context.time: " + err.message)
        else:
            if self.bounded:
                server = self.arrival if self.arrival >= 0 else _nanos(CLOCK_REALTIME) / 1e9
                if not (-self.max_skew <= <double>now - server <= self.max_skew):
                    try:
                        clock.bounded(now, server, self.max_skew)
                    except EvalError as err:
                        now = _from(err)
        self.now_value, self.now_kind = now, 3
        return 0

    cdef object now_or_err(self):
        """The request time (an int or a float of seconds), or its _Err."""
        cdef int kind = self.now_c()
        if self.now_value is _UNSET:  # kinds 1 and 2: made when first asked for as an object
            self.now_value = self.now_int if kind == 1 else self.now_float
        return self.now_value

    def now(self):
        """For the built-ins (``age``): the request time, or raise EvalError."""
        now = self.now_or_err()
        if type(now) is _Err:
            raise EvalError((<_Err>now).text())
        return now


# ---- dicts read in place (CPython 3.11, 3.12) ---------------------------------------------

cdef extern from *:
    """
    /* PyDict_Next of an exact dict, the common case read in place: PyDict_Next is a call and
       ~50 instructions an item, about half of a request's validation. CPython 3.11 and 3.12
       keep a combined dict with str keys as an array of (key, value) entries after its hash
       index (Include/internal/pycore_dict.h: the layout below); a removed entry's value is
       NULL. Any other dict (split, other keys), version or build goes to PyDict_Next, as does
       everything when pdp_dict_layout_checked() found another layout at import. */
    #if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000 && !defined(Py_GIL_DISABLED)
    typedef struct {
        Py_ssize_t dk_refcnt;
        uint8_t dk_log2_size;
        uint8_t dk_log2_index_bytes;
        uint8_t dk_kind;
        uint32_t dk_version;
        Py_ssize_t dk_usable;
        Py_ssize_t dk_nentries;
        char dk_indices[];
    } pdp_dict_keys;
    typedef struct { PyObject *key; PyObject *value; } pdp_str_entry;
    static int pdp_dict_in_place = 0;  /* set by pdp_dict_layout_checked */

    static inline int pdp_dict_next(PyObject *d, Py_ssize_t *pos, PyObject **key, PyObject **value) {
        PyDictObject *mp = (PyDictObject *)d;
        pdp_dict_keys *keys = (pdp_dict_keys *)mp->ma_keys;
        if (!pdp_dict_in_place || mp->ma_values != NULL || keys->dk_kind != 1 /* DICT_KEYS_UNICODE */)
            return PyDict_Next(d, pos, key, value);
        pdp_str_entry *entries = (pdp_str_entry *)(keys->dk_indices + ((size_t)1 << keys->dk_log2_index_bytes));
        Py_ssize_t i = *pos, n = keys->dk_nentries;
        while (i < n && entries[i].value == NULL)
            i++;
        if (i >= n)
            return 0;
        *key = entries[i].key;
        *value = entries[i].value;
        *pos = i + 1;
        return 1;
    }

    /* A str key's value in an exact dict, read in place: CPython's probe sequence over a
       combined table of str keys (Objects/dictobject.c, unicodekeys_lookup_unicode), the key
       found as the same object or an equal str of the same hash. 1: found (*value borrowed),
       0: absent, -1: unsure (another dict or key type: look it up as usual, PyDict_GetItem...).
       A lookup through PyDict_GetItemWithError with the calls around it was ~130 instructions,
       dict lookups about a sixth of a library decision. */
    static inline Py_ssize_t pdp_dict_index(pdp_dict_keys *keys, size_t i) {
        int log2 = keys->dk_log2_size;
        if (log2 < 8) return ((const int8_t *)keys->dk_indices)[i];
        if (log2 < 16) return ((const int16_t *)keys->dk_indices)[i];
        if (log2 >= 32) return (Py_ssize_t)((const int64_t *)keys->dk_indices)[i];
        return ((const int32_t *)keys->dk_indices)[i];
    }

    #if defined(__GNUC__)
    __attribute__((always_inline))  /* a call, for gcc, in _Path2 and _Index: ~20 instructions more a look-up */
    #endif
    static inline int pdp_dict_get(PyObject *d, PyObject *key, PyObject **value) {
        PyDictObject *mp = (PyDictObject *)d;
        pdp_dict_keys *keys = (pdp_dict_keys *)mp->ma_keys;
        if (!pdp_dict_in_place || mp->ma_values != NULL || keys->dk_kind != 1 || !PyUnicode_CheckExact(key))
            return -1;
        Py_hash_t hash = ((PyASCIIObject *)key)->hash;
        if (hash == -1) {
            hash = PyObject_Hash(key);  /* a str's: computed once, kept in the string */
            if (hash == -1) { PyErr_Clear(); return -1; }
        }
        pdp_str_entry *entries = (pdp_str_entry *)(keys->dk_indices + ((size_t)1 << keys->dk_log2_index_bytes));
        size_t mask = ((size_t)1 << keys->dk_log2_size) - 1;
        size_t perturb = (size_t)hash;
        size_t i = (size_t)hash & mask;
        Py_ssize_t ix;
        for (;;) {
            ix = pdp_dict_index(keys, i);
            if (ix >= 0) {
                PyObject *found = entries[ix].key;
                if (found == key) break;
                if (found != NULL && ((PyASCIIObject *)found)->hash == hash
                        && PyUnicode_GET_LENGTH(found) == PyUnicode_GET_LENGTH(key)
                        && PyUnicode_KIND(found) == PyUnicode_KIND(key)
                        && memcmp(PyUnicode_DATA(found), PyUnicode_DATA(key),
                                  PyUnicode_GET_LENGTH(key) * PyUnicode_KIND(key)) == 0)
                    break;
            }
            else if (ix == -1)  /* DKIX_EMPTY: not in the dict (-2, a removed entry: go on) */
                return 0;
            perturb >>= 5;  /* PERTURB_SHIFT */
            i = mask & (i * 5 + perturb + 1);
        }
        *value = entries[ix].value;
        return *value != NULL ? 1 : -1;
    }

    /* 1 when pdp_dict_get finds what PyDict_GetItem finds in ``d`` for ``key`` (0 otherwise). */
    static int pdp_dict_get_agrees(PyObject *d, PyObject *key) {
        PyObject *want = PyDict_GetItemWithError(d, key), *got = NULL;
        if (want == NULL && PyErr_Occurred()) return 0;
        int r = pdp_dict_get(d, key, &got);
        return want != NULL ? (r == 1 && got == want) : r == 0;
    }

    /* 1 when reading in place gives PyDict_Next's items, in order, on dicts of str keys with
       removed entries and of several sizes (then it is used); 0 otherwise. */
    static int pdp_dict_layout_checked(void) {
        int same = 1;
        for (int size = 1; size <= 700 && same; size = size * 3 + 1) {
            PyObject *d = PyDict_New();
            if (d == NULL) { PyErr_Clear(); return 0; }
            for (int i = 0; i < size && same; i++) {
                PyObject *k = PyUnicode_FromFormat("k%d", i);
                PyObject *v = PyLong_FromLong(i);
                if (k == NULL || v == NULL || PyDict_SetItem(d, k, v) < 0) same = 0;
                if (same && i % 3 == 1 && PyDict_DelItem(d, k) < 0) same = 0;
                Py_XDECREF(k);
                Py_XDECREF(v);
            }
            pdp_dict_in_place = 1;
            /* each key as the dict's own object and as an equal copy; removed and absent keys */
            Py_ssize_t p = 0;
            PyObject *ek, *ev;
            while (same && PyDict_Next(d, &p, &ek, &ev))
                if (!pdp_dict_get_agrees(d, ek)) same = 0;
            for (int i = 0; i < size + 40 && same; i++) {
                PyObject *k = PyUnicode_FromFormat(i < size ? "k%d" : "absent%d", i);
                if (k == NULL || !pdp_dict_get_agrees(d, k)) same = 0;
                Py_XDECREF(k);
            }
            Py_ssize_t a = 0, b = 0, seen = 0;
            PyObject *ka, *va, *kb, *vb;
            while (same) {
                int more = PyDict_Next(d, &a, &ka, &va);
                if (more != pdp_dict_next(d, &b, &kb, &vb)) { same = 0; break; }
                if (!more) break;
                if (ka != kb || va != vb || a != b) same = 0;
                seen++;
            }
            pdp_dict_in_place = 0;
            if (seen != PyDict_GET_SIZE(d)) same = 0;
            Py_DECREF(d);
        }
        PyErr_Clear();
        pdp_dict_in_place = same;
        return same;
    }
    #else
    #define pdp_dict_next PyDict_Next
    static inline int pdp_dict_get(PyObject *d, PyObject *key, PyObject **value) { return -1; }
    static int pdp_dict_layout_checked(void) { return 0; }
    #endif
    """
    bint _next "pdp_dict_next"(PyObject* d, Py_ssize_t* pos, PyObject** key, PyObject** value) noexcept
    int _dict_get "pdp_dict_get"(PyObject* d, PyObject* key, PyObject** value) noexcept
    bint pdp_dict_layout_checked() noexcept


#: Whether dicts are read in place (pdp_dict_next, pdp_dict_get; tests/test_fast_validation.py).
DICTS_READ_IN_PLACE = pdp_dict_layout_checked()


def _read_in_place(dict d, object key):
    """pdp_dict_get for tests: (1, value) found, (0, None) absent, (-1, None) left to the usual
    lookup (another dict or key type)."""
    cdef PyObject* held
    cdef int got = _dict_get(<PyObject*>d, <PyObject*>key, &held)
    return (got, <object>held if got == 1 else None)


cdef inline object _get(dict d, object key, object default):
    """``d.get(key, default)``, read in place for a str key where it can be (pdp_dict_get)."""
    cdef PyObject* held
    cdef int got = _dict_get(<PyObject*>d, <PyObject*>key, &held)
    if got == 1:
        return <object>held
    if got == 0:
        return default
    return d.get(key, default)


# ---- nodes -------------------------------------------------------------------------------

# The linked program is a DAG of these objects, never a cycle: no_gc keeps the garbage
# collector from traversing thousands of them on every full collection.
cdef inline void _release_owned(PyObject** items, Py_ssize_t n) noexcept:
    """Drop the ``n`` owned references of an array from the link arena, and the array
    (NULL: none)."""
    cdef Py_ssize_t i
    if items != NULL:
        for i in range(n):
            Py_XDECREF(items[i])
        pdp_arena_release(items)


@cython.no_gc
cdef class _Node:
    cdef object ev(self, _Context ctx):
        raise NotImplementedError


@cython.no_gc
cdef class _Const(_Node):
    cdef object value

    cdef object ev(self, _Context ctx):
        return self.value


@cython.no_gc
cdef class _Error(_Node):
    cdef _Err err

    cdef object ev(self, _Context ctx):
        return self.err


@cython.no_gc
cdef class _Path(_Node):
    cdef int root
    cdef tuple keys
    cdef tuple texts
    cdef tuple missing  # the error of each key being missing: worded once, at load
    cdef _Err absent  # the error of the root being absent (the token root only)
    cdef Py_ssize_t n

    cdef object ev(self, _Context ctx):
        # Borrowed all the way down (the request holds every value; no Python code runs on the
        # way), so the maps passed are not touched but read; the value found is returned owned.
        cdef PyObject* value = ctx.roots[self.root]
        cdef object found
        cdef Py_ssize_t i
        if value == NULL:  # the token root of a request without a token
            return self.absent
        cdef PyObject* held
        cdef PyObject* key
        cdef int got
        for i in range(self.n):
            if _type(value) != &PyDict_Type:
                return _lazy(not_a_map, (self.texts[i], <object>value))
            key = _tuple_item(<PyObject*>self.keys, i)
            got = _dict_get(value, key, &held)
            if got == 1:
                value = held
                continue
            if got == 0:
                return self.missing[i]
            found = (<dict>value).get(<object>key, _UNSET)  # (a dict of non-str keys: no code runs)
            if found is _UNSET:
                return self.missing[i]
            value = <PyObject*>found  # held by its map, which the request holds
        return <object>value


@cython.no_gc
cdef class _Path1(_Node):
    """A path of one key (``identity.env``): most paths, so without the loop."""
    cdef int root
    cdef str key
    cdef _Err missing

    cdef object ev(self, _Context ctx):
        cdef PyObject* root = ctx.roots[self.root]  # a dict (not the token: never absent), borrowed
        cdef PyObject* held
        cdef int got = _dict_get(root, <PyObject*>self.key, &held)
        if got == 1:
            return <object>held
        if got == 0:
            return self.missing
        cdef object found = (<dict>root).get(self.key, _UNSET)
        if found is _UNSET:
            return self.missing
        return found


@cython.no_gc
cdef class _Path2(_Node):
    """A path of two keys on a request root (``identity.credential.kind``, ``context.tls.
    peer_cert_sha256``): the library reads a dozen a request; as _Path without its loop, its
    tuples of keys and errors, or a test of the root (a dict: not the token, never absent)."""
    cdef int root
    cdef str key1, key2
    cdef str text1  # the path's text up to key1 (not_a_map's)
    cdef _Err missing1, missing2

    cdef object ev(self, _Context ctx):
        cdef PyObject* value = ctx.roots[self.root]
        cdef PyObject* held
        cdef object found
        cdef int got = _dict_get(value, <PyObject*>self.key1, &held)
        if got == 1:
            value = held
        elif got == 0:
            return self.missing1
        else:
            found = (<dict>value).get(self.key1, _UNSET)  # (a dict of non-str keys: no code runs)
            if found is _UNSET:
                return self.missing1
            value = <PyObject*>found  # held by its map, which the request holds
        if _type(value) != &PyDict_Type:
            return _lazy(not_a_map, (self.text1, <object>value))
        got = _dict_get(value, <PyObject*>self.key2, &held)
        if got == 1:
            return <object>held
        if got == 0:
            return self.missing2
        found = (<dict>value).get(self.key2, _UNSET)
        if found is _UNSET:
            return self.missing2
        return found


@cython.no_gc
cdef class _Now(_Node):
    cdef object ev(self, _Context ctx):
        return ctx.now_or_err()


@cython.no_gc
cdef class _Attr(_Node):
    cdef _Node obj
    cdef str name, obj_text
    cdef _Err missing

    cdef object ev(self, _Context ctx):
        cdef object value = self.obj.ev(ctx)
        cdef object found
        if type(value) is _Err:
            return value
        if type(value) is not dict:
            return _lazy(not_a_map, (self.obj_text, value))
        cdef PyObject* held
        cdef int got = _dict_get(<PyObject*>value, <PyObject*>self.name, &held)
        if got == 1:
            return <object>held
        if got == 0:
            return self.missing
        found = (<dict>value).get(self.name, _UNSET)
        if found is _UNSET:
            return self.missing
        return found


@cython.no_gc
cdef class _Index(_Node):
    cdef _Node obj, key
    cdef str obj_text

    cdef object ev(self, _Context ctx):
        cdef object value = self.obj.ev(ctx)
        if type(value) is _Err:
            return value
        cdef object key = self.key.ev(ctx)
        if type(key) is _Err:
            return key
        if type(value) is dict and type(key) is str:
            found = _get(<dict>value, key, _UNSET)
            if found is not _UNSET:
                return found
            return _lazy(_index_message, (value, key, self.obj_text))
        try:
            return index_value(value, key, self.obj_text)
        except EvalError as err:
            return _from(err)


@cython.no_gc
cdef class _IndexKey(_Node):
    """``obj["key"]`` of a constant str key (``context.headers["user-agent"]``): as _Index,
    without a node to read the key from, and the key's missing error worded once, at load."""
    cdef _Node obj
    cdef str key, obj_text
    cdef _Err missing

    cdef object ev(self, _Context ctx):
        cdef object value = self.obj.ev(ctx)
        cdef object found
        cdef PyObject* held
        cdef int got
        if type(value) is dict:
            got = _dict_get(<PyObject*>value, <PyObject*>self.key, &held)
            if got == 1:
                return <object>held
            if got == 0:
                return self.missing
            found = (<dict>value).get(self.key, _UNSET)
            if found is _UNSET:
                return self.missing
            return found
        if type(value) is _Err:
            return value
        try:
            return index_value(value, self.key, self.obj_text)
        except EvalError as err:
            return _from(err)


@cython.no_gc
cdef class _List(_Node):
    cdef tuple items

    cdef object ev(self, _Context ctx):
        cdef list out = []
        cdef object item, value
        for item in self.items:  # untyped loop variable: no per-item type test (items are _Nodes)
            value = (<_Node>item).ev(ctx)
            if type(value) is _Err:
                return value
            out.append(value)
        return out


@cython.no_gc
cdef class _Not(_Node):
    cdef _Node operand

    cdef object ev(self, _Context ctx):
        cdef object value = self.operand.ev(ctx)
        if value is True:
            return False
        if value is False:
            return True
        if type(value) is _Err:
            return value
        return _lazy(not_boolean, ("not", value))


@cython.no_gc
cdef class _Logic(_Node):
    cdef object settles  # False for and, True for or
    cdef str name
    cdef Py_ssize_t n
    # ``n`` owned references to the operands, from the link arena right after the node (its
    # cache line, not a tuple elsewhere: at 10,000 rules a rule's and/or is cold)
    cdef PyObject** items

    def __dealloc__(self):
        _release_owned(self.items, self.n)

    cdef object ev(self, _Context ctx):
        cdef object value
        cdef Py_ssize_t i
        for i in range(self.n):
            value = (<_Node>self.items[i]).ev(ctx)
            if value is self.settles:
                return value
            if value is not True and value is not False:
                if type(value) is _Err:
                    return value
                return _lazy(not_boolean, (self.name, value, True))
        return not self.settles


# Operator codes for _Compare's fast paths (string compares of the operator name cost more
# than the operation itself).
cdef enum:
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOT_IN, OP_CONTAINS, OP_CONTAINS_ANY
    OP_CONTAINS_ALL, OP_MATCHES, OP_STARTSWITH, OP_ENDSWITH

cdef dict _OP_CODES = {
    "==": OP_EQ, "!=": OP_NE, "<": OP_LT, "<=": OP_LE, ">": OP_GT, ">=": OP_GE, "in": OP_IN,
    "not in": OP_NOT_IN, "contains": OP_CONTAINS, "contains_any": OP_CONTAINS_ANY,
    "contains_all": OP_CONTAINS_ALL, "matches": OP_MATCHES, "startswith": OP_STARTSWITH,
    "endswith": OP_ENDSWITH,
}


@cython.final
cdef class _CompareMemo:
    """What a _Compare keeps between requests, made when first needed (most compares never
    need it, and a _Compare is read by every request that meets it: it stays 48 bytes)."""
    cdef dict globs  # `matches` with a computed pattern: the patterns met, compiled
    cdef _Ranges ranges  # `in cidr(...)`: the ranges of the last set met, and of the others
    cdef dict other_ranges

    def __cinit__(self):
        self.globs = {}
        self.other_ranges = {}


#: The operator names by code: the slow path calls the shared operator of that name (which
#: words the errors), looked up when called.
cdef tuple _OP_NAMES = tuple(sorted(_OP_CODES, key=_OP_CODES.get))


@cython.no_gc
cdef class _Compare(_Node):
    """``left op right``. A constant right operand (most are) is held as its value, not as a
    _Const node: one object less to read (linked elsewhere when other rules share it)."""
    cdef int op
    cdef _Node left
    cdef _Node right  # None when the right operand is the constant ``value``
    cdef object value
    cdef _CompareMemo kept  # None until a `matches` or an `in cidr(...)` meets a value it keeps

    cdef _CompareMemo keeps(self):
        if self.kept is None:
            self.kept = _CompareMemo.__new__(_CompareMemo)
        return self.kept

    cdef _Ranges ranges_of(self, object networks):
        cdef _CompareMemo kept = self.keeps()
        cdef _Ranges found = kept.ranges
        if found is not None and found.networks is networks:
            return found
        key = id(networks)  # kept alive by the _Ranges: the id is not reused while cached
        found = kept.other_ranges.get(key)
        if found is None:
            found = _ranges_of(networks)
            if len(kept.other_ranges) < _RANGES_KEPT:
                kept.other_ranges[key] = found
        kept.ranges = found
        return found

    cdef object ev(self, _Context ctx):
        cdef object a = self.left.ev(ctx)
        if type(a) is _Err:
            return a
        cdef object b
        if self.right is None:
            b = self.value
        else:
            b = self.right.ev(ctx)
            if type(b) is _Err:
                return b
        cdef int op = self.op
        cdef type ta = type(a)
        cdef type tb = type(b)
        cdef object found
        cdef long long x, y
        cdef int ox, oy, same
        if ta is tb and ta is int and op <= OP_GE:
            # Integers that fit in C: compare without Python's rich-comparison dispatch.
            x = PyLong_AsLongLongAndOverflow(a, &ox)
            y = PyLong_AsLongLongAndOverflow(b, &oy)
            if ox == 0 and oy == 0:
                if op == OP_EQ:
                    return x == y
                if op == OP_NE:
                    return x != y
                if op == OP_LT:
                    return x < y
                if op == OP_LE:
                    return x <= y
                if op == OP_GT:
                    return x > y
                return x >= y
        if op <= OP_NE:
            if ta is tb and ta is str:
                # Cython's own str equality: identity, length and memcmp, no rich-compare dispatch.
                if op == OP_EQ:
                    return (<str>a) == (<str>b)
                return (<str>a) != (<str>b)
            same = _equal(a, b, 0)
            if same >= 0:
                return (same == 1) == (op == OP_EQ)
        if ta is tb and (ta is str or ta is int or ta is float):
            # Same-typed scalars; everything else goes to the shared operators.
            if op == OP_LT:
                return a < b
            if op == OP_LE:
                return a <= b
            if op == OP_GT:
                return a > b
            if op == OP_GE:
                return a >= b
            if ta is str:
                if op == OP_MATCHES:
                    found = _dynamic_match(self.keeps().globs, <str>a, <str>b)
                    if found is not None:
                        return found
                if op == OP_STARTSWITH:
                    return (<str>a).startswith(b)
                if op == OP_ENDSWITH:
                    return (<str>a).endswith(b)
                if op == OP_CONTAINS:
                    return b in <str>a
        elif tb is list:
            if ta is str and op == OP_IN:
                return a in <list>b
            if ta is str and op == OP_NOT_IN:
                return a not in <list>b
            if op == OP_IN or op == OP_NOT_IN:
                same = _member(a, <list>b)
                if same >= 0:
                    return (same == 1) == (op == OP_IN)
            if ta is list and (op == OP_CONTAINS_ANY or op == OP_CONTAINS_ALL):
                found = _strings_in(<list>b, <list>a, op == OP_CONTAINS_ANY)
                if found is not None:
                    return found
        elif ta is list and tb is str and op == OP_CONTAINS:
            return b in <list>a
        elif tb is _CIDR_SET and ta is str and (op == OP_IN or op == OP_NOT_IN):
            found = _in_networks(self.ranges_of(b), <str>a, ctx)
            if found is not None:
                return (found is True) == (op == OP_IN)
        if ta is list and op == OP_CONTAINS:  # an item of another type than a string
            same = _member(b, <list>a)
            if same >= 0:
                return same == 1
        try:
            return _OPERATORS[<object>PyTuple_GET_ITEM(_OP_NAMES, op)](a, b)
        except EvalError as err:
            return _from(err)


cdef long long _ipv4(const unsigned char* s, Py_ssize_t n) noexcept:
    """The integer of a dotted-quad IPv4 address (the ``n`` bytes of an ASCII text at ``s``),
    or -1 when it is not one: the rules of values._ipv4_int (1 to 3 ASCII digits a part, no
    leading zero, at most 255)."""
    cdef Py_ssize_t i
    cdef long long value = 0
    cdef int part = 0, digits = 0, dots = 0, code, first = 0
    if n < 7 or n > 15:
        return -1
    for i in range(n):
        code = s[i]
        if code == 46:  # '.'
            if digits == 0:
                return -1
            value = value << 8 | part
            dots += 1
            part = digits = 0
        elif 48 <= code <= 57:  # '0'-'9'
            if digits == 0:
                first = code
            elif first == 48 or digits == 3:
                return -1  # a leading zero, or a fourth digit
            digits += 1
            part = part * 10 + (code - 48)
            if part > 255:
                return -1
        else:
            return -1
    if digits == 0 or dots != 3:
        return -1
    return value << 8 | part


cdef inline int _hex(int code) noexcept:
    if 48 <= code <= 57:
        return code - 48
    if 97 <= code <= 102:
        return code - 87
    if 65 <= code <= 70:
        return code - 55
    return -1


cdef bint _ipv6(const unsigned char* s, Py_ssize_t n, unsigned long long* hi, unsigned long long* lo) noexcept:
    """Parse the plain IPv6 forms (hex groups of 1 to 4 digits, at most one ``::``) of the
    ``n`` bytes of an ASCII text at ``s`` into the 128-bit address; False for anything else
    (an IPv4 suffix, a scope, a malformed text), which ipaddress then parses or refuses."""
    cdef Py_ssize_t i = 0
    cdef int groups[8]
    cdef int count = 0, skip = -1, digits, value, d, k
    if n < 2 or n > 39:
        return False
    if s[0] == 58:  # a leading ':' only as part of '::'
        if s[1] != 58:
            return False
        skip = 0
        i = 2
    while i < n:
        digits = value = 0
        while i < n and digits <= 4:
            d = _hex(s[i])
            if d < 0:
                break
            value = value * 16 + d
            digits += 1
            i += 1
        if digits == 0 or digits > 4 or count == 8:
            return False
        groups[count] = value
        count += 1
        if i == n:
            break
        if s[i] != 58:
            return False
        i += 1
        if i < n and s[i] == 58:
            if skip >= 0:
                return False  # a second '::'
            skip = count
            i += 1
        elif i == n:
            return False  # a trailing single ':'
    if (skip < 0 and count != 8) or (skip >= 0 and count > 7):
        return False
    hi[0] = lo[0] = 0
    for k in range(8):  # the groups, with the zeros of '::' at position skip
        if skip < 0 or k < skip:
            d = groups[k]
        elif k < skip + 8 - count:
            d = 0
        else:
            d = groups[k - (8 - count)]
        if k < 4:
            hi[0] = hi[0] << 16 | <unsigned long long>d
        else:
            lo[0] = lo[0] << 16 | <unsigned long long>d
    return True


@cython.final
@cython.no_gc  # holds a CidrSet (which holds no evaluator object) and C arrays
cdef class _Ranges:
    """A CidrSet's merged ranges (values.CidrSet._v4, _v6) as C integers, for the binary
    searches of ``ip in cidr(...)``: IPv4 as (start, end), IPv6 as (start high, start low,
    end high, end low)."""
    cdef object networks
    cdef Py_ssize_t n4, n6
    cdef unsigned long long* v4
    cdef unsigned long long* v6

    def __dealloc__(self):
        free(self.v4)
        free(self.v6)

    cdef bint has4(self, unsigned long long address) noexcept:
        return _has4(self.v4, self.n4, address)

    cdef bint has6(self, unsigned long long high, unsigned long long low) noexcept:
        return _has6(self.v6, self.n6, high, low)


cdef bint _has4(const unsigned long long* v4, Py_ssize_t n4, unsigned long long address) noexcept:
    """``address`` is in one of the ``n4`` merged IPv4 ranges (start, end) at ``v4``."""
    cdef Py_ssize_t lo = 0, hi = n4, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if address < v4[2 * mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo > 0 and address <= v4[2 * lo - 1]


cdef bint _has6(const unsigned long long* v6, Py_ssize_t n6, unsigned long long high,
                unsigned long long low) noexcept:
    """The IPv6 address (high, low) is in one of the ``n6`` merged ranges at ``v6``."""
    cdef Py_ssize_t lo = 0, hi = n6, mid
    cdef const unsigned long long* r
    while lo < hi:
        mid = (lo + hi) >> 1
        r = v6 + 4 * mid
        if high < r[0] or (high == r[0] and low < r[1]):
            hi = mid
        else:
            lo = mid + 1
    if lo == 0:
        return False
    r = v6 + 4 * (lo - 1)
    return high < r[2] or (high == r[2] and low <= r[3])


cdef void _fill_ranges(object networks, unsigned long long* v4, unsigned long long* v6) except *:
    """Write a CidrSet's merged ranges (``len(networks._v4[0])`` IPv4 ranges, ``len(
    networks._v6[0])`` IPv6 ones) to ``v4`` and ``v6`` in _Ranges' layout."""
    cdef Py_ssize_t i
    starts, ends = networks._v4
    for i in range(len(starts)):
        v4[2 * i], v4[2 * i + 1] = starts[i], ends[i]
    starts, ends = networks._v6
    for i in range(len(starts)):
        v6[4 * i], v6[4 * i + 1] = starts[i] >> 64, starts[i] & 0xFFFFFFFFFFFFFFFF
        v6[4 * i + 2], v6[4 * i + 3] = ends[i] >> 64, ends[i] & 0xFFFFFFFFFFFFFFFF


cdef _Ranges _ranges_of(object networks):
    cdef _Ranges r = _Ranges.__new__(_Ranges)
    cdef Py_ssize_t i
    r.networks = networks
    r.n4 = len(networks._v4[0])
    r.v4 = <unsigned long long*>malloc(sizeof(unsigned long long) * (2 * r.n4 + 1))
    r.n6 = len(networks._v6[0])
    r.v6 = <unsigned long long*>malloc(sizeof(unsigned long long) * (4 * r.n6 + 1))
    if r.v4 == NULL or r.v6 == NULL:
        raise MemoryError()
    _fill_ranges(networks, r.v4, r.v6)
    return r


cdef object _in_networks(_Ranges ranges, str text, _Context ctx):
    """``text in ranges`` (see _in_ranges)."""
    return _in_ranges(ranges.v4, ranges.n4, ranges.v6, ranges.n6, text, ctx)


cdef object _in_ranges(const unsigned long long* v4, Py_ssize_t n4, const unsigned long long* v6,
                       Py_ssize_t n6, str text, _Context ctx):
    """``text`` in the merged ranges ``v4``, ``v6`` (_Ranges' layout) for an IPv4 or plain
    IPv6 address (IPv4-mapped IPv6 addresses also in the IPv4 ranges, as CidrSet.contains);
    None when ipaddress must tell (or refuse). The address is parsed once a request: a
    request's source address meets several sets."""
    cdef unsigned long long hi = 0, lo = 0
    cdef long long address
    cdef int kind = 0
    if text is not ctx.ip_text:
        if _ukind(text) == 1:  # (an address is ASCII; anything else is ipaddress's to refuse)
            address = _ipv4(<const unsigned char*>_udata(text), len(text))
            if address >= 0:
                kind, lo = 4, <unsigned long long>address
            elif _ipv6(<const unsigned char*>_udata(text), len(text), &hi, &lo):
                kind = 6
        ctx.ip_text, ctx.ip_kind, ctx.ip_hi, ctx.ip_lo = text, kind, hi, lo
    if ctx.ip_kind == 4:
        return _has4(v4, n4, ctx.ip_lo)
    if ctx.ip_kind == 0:
        return None
    hi, lo = ctx.ip_hi, ctx.ip_lo
    if _has6(v6, n6, hi, lo):
        return True
    return hi == 0 and (lo >> 32) == 0xFFFF and _has4(v4, n4, lo & 0xFFFFFFFF)


cdef object _strings_in(list needles, list haystack, bint any_of):
    """contains_any / contains_all (a string equals only strings, so Python's `in` is pdp
    equality for one; other needles are compared by _equal); None to let the shared operator
    decide."""
    cdef object needle
    cdef int found
    cdef bint unsure = False
    if len(needles) * len(haystack) > _SCAN_PAIRS:
        return None  # many pairs: the shared operator hashes (linear, not quadratic)
    for needle in needles:  # (the result does not depend on the order: membership never fails)
        found = (needle in haystack) if type(needle) is str else _member(needle, haystack)
        if found == any_of:
            return any_of
        if found < 0:
            unsure = True  # a value _equal leaves to values.equal
    return None if unsure else not any_of


#: Nesting _equal follows in C; deeper values go to values.equal (iterative).
cdef int _EQUAL_DEPTH = 32


cdef inline bint _json_type(type t) noexcept:
    return t is str or t is bool or t is int or t is float or t is list or t is dict


cdef int _equal(object a, object b, int depth) except -2:
    """values.equal in C for the JSON types (str, bool, int, float, list, dict: every request
    value is one of them exactly): 1 when equal, 0 when not; -1 for any other value (values.equal
    decides). Equality of compound values is the conjunction of their items', so the first
    unequal pair settles it."""
    cdef type ta = type(a)
    cdef type tb = type(b)
    cdef Py_ssize_t i, n
    cdef object key, value, other
    cdef int same
    if ta is str:
        if tb is str:
            return (<str>a) == (<str>b)
    elif ta is bool:
        if tb is bool:
            return a is b
    elif ta is int or ta is float:
        if tb is int or tb is float:
            return a == b  # by value (1 == 1.0); a NaN equals nothing, as in values.equal
    elif ta is list:
        if tb is list:
            n = len(<list>a)
            if n != len(<list>b):
                return 0
            if depth >= _EQUAL_DEPTH:
                return -1
            for i in range(n):
                same = _equal((<list>a)[i], (<list>b)[i], depth + 1)
                if same != 1:
                    return same
            return 1
    elif ta is dict:
        if tb is dict:
            if len(<dict>a) != len(<dict>b):
                return 0
            if depth >= _EQUAL_DEPTH:
                return -1
            for key, value in (<dict>a).items():
                other = (<dict>b).get(key, _UNSET)
                if other is _UNSET:
                    return 0
                same = _equal(value, other, depth + 1)
                if same != 1:
                    return same
            return 1
    else:
        return -1
    return 0 if _json_type(tb) else -1  # values of two JSON types: unequal


cdef int _member(object item, list items) except -2:
    """operators.member(item, items) by _equal: 1, 0, or -1 when values.equal must decide."""
    cdef object x
    cdef int same, unsure = 0
    for x in items:
        same = _equal(item, x, 0)
        if same == 1:
            return 1
        if same < 0:
            unsure = 1
    return -1 if unsure else 0


@cython.no_gc
cdef class _EqStr(_Node):
    cdef _Node operand
    cdef str text
    cdef bint negate

    cdef object ev(self, _Context ctx):
        cdef object value = self.operand.ev(ctx)
        if type(value) is str:
            return (value == self.text) != self.negate
        if type(value) is _Err:
            return value
        return self.negate  # a non-string never equals a string


#: The most strs an _InStrs scans beside it in the link arena; more are looked up in the set.
cdef Py_ssize_t _INLINE_TEXTS = 8


#: An item of an _InStrs's inline texts: a str (held by the node's set) and its hash.
cdef struct _Text:
    Py_hash_t hash
    PyObject* text


@cython.no_gc
cdef class _InStrs(_Node):
    cdef _Node operand
    cdef frozenset texts
    cdef bint negate
    cdef int n
    # At most _INLINE_TEXTS: the ``n`` texts and their hashes from the link arena right after
    # the node, scanned, not a set object and its table elsewhere (NULL: more; the set's).
    cdef _Text* table

    def __dealloc__(self):
        if self.table != NULL:
            pdp_arena_release(self.table)

    cdef bint has(self, str value) except -1:
        """``value in texts`` by the inline table: a hash and a str are equal as in the set."""
        cdef Py_hash_t h = _str_hash(<PyObject*>value)
        cdef int i
        for i in range(self.n):
            if self.table[i].hash == h and (self.table[i].text == <PyObject*>value
                                            or _same_text(self.table[i].text, <PyObject*>value)):
                return True
        return False

    cdef object ev(self, _Context ctx):
        cdef object value = self.operand.ev(ctx)
        if type(value) is str:
            if self.table != NULL:
                return self.has(<str>value) != self.negate
            return (value in self.texts) != self.negate
        if type(value) is _Err:
            return value
        return self.negate


#: The most 8-byte words of ranges an _InCidr keeps beside it in the link arena; a larger
#: constant set is left to _Compare (its ranges in a _Ranges).
cdef Py_ssize_t _INLINE_RANGE_WORDS = 4096


@cython.no_gc
cdef class _InCidr(_Node):
    """``x in cidr(...)`` (``not in``: ``negate``) of a constant set: its merged ranges as C
    integers from the link arena right after the node (IPv4 (start, end) pairs, then IPv6
    (start high, start low, end high, end low)), not a _Ranges and two arrays elsewhere."""
    cdef _Node operand
    cdef object networks  # the CidrSet: the shared operator's, for what C leaves to it
    cdef unsigned long long* words
    cdef int n4, n6
    cdef bint negate

    def __dealloc__(self):
        if self.words != NULL:
            pdp_arena_release(self.words)

    cdef object ev(self, _Context ctx):
        cdef object a = self.operand.ev(ctx)
        cdef object found
        if type(a) is str:
            found = _in_ranges(self.words, self.n4, self.words + 2 * self.n4, self.n6, <str>a, ctx)
            if found is not None:
                return (found is True) != self.negate
        elif type(a) is _Err:
            return a
        try:
            return _OPERATORS["not in" if self.negate else "in"](a, self.networks)
        except EvalError as err:
            return _from(err)


cdef inline bint _one_star(str value, str prefix, str suffix) except -1:
    """``value`` matches the glob ``prefix*suffix``: the text between them holds no '/'."""
    cdef Py_ssize_t lead = len(prefix)
    cdef Py_ssize_t end = len(value) - len(suffix)
    return (end >= lead and value.startswith(prefix) and value.endswith(suffix)
            and PyUnicode_FindChar(value, 0x2F, lead, end, 1) == -1)


#: Patterns a `matches` with a computed pattern (data, request) keeps compiled; a bound keeps
#: request data from filling memory.
cdef Py_ssize_t _GLOBS_KEPT = 256
#: Sets of networks a `in cidr(...)` with a computed set keeps as C ranges (same reason).
cdef Py_ssize_t _RANGES_KEPT = 64


cdef object _dynamic_match(dict globs, str text, str pattern):
    """``text matches pattern`` for a pattern known only per request; None when the pattern
    is malformed (the shared operator words the error)."""
    cdef object glob = globs.get(pattern)
    if glob is None:
        try:
            glob = compile_glob(pattern)
        except ValueError:
            return None
        if glob.one_star is not None:
            glob = glob.one_star  # (prefix, suffix)
        elif "*" not in pattern and "?" not in pattern:
            glob = True  # no wildcard: the pattern matches itself only
        if len(globs) < _GLOBS_KEPT:
            globs[pattern] = glob
    if glob is True:
        return text == pattern
    if type(glob) is tuple:
        return _one_star(text, <str>(<tuple>glob)[0], <str>(<tuple>glob)[1])
    return glob.match(text)


@cython.no_gc
cdef class _MatchGlob(_Node):
    cdef _Node operand
    cdef object match
    cdef str pattern
    cdef bint one_star  # the pattern is "prefix*suffix" (glob.one_star): matched here in C
    cdef bint literal  # no wildcard: the pattern matches itself only
    cdef str prefix, suffix

    cdef object ev(self, _Context ctx):
        cdef object value = self.operand.ev(ctx)
        if type(value) is str:
            if self.one_star:
                return _one_star(<str>value, self.prefix, self.suffix)
            if self.literal:
                return value == self.pattern
            return self.match(value)
        if type(value) is _Err:
            return value
        try:
            return operators.apply("matches", value, self.pattern)
        except EvalError as err:
            return _from(err)


@cython.no_gc
cdef class _Call(_Node):
    cdef object impl
    cdef tuple args

    cdef object ev(self, _Context ctx):
        cdef list values = []
        cdef _Node arg
        cdef object value
        for arg in self.args:
            value = arg.ev(ctx)
            if type(value) is _Err:
                return value
            values.append(value)
        try:
            return self.impl(ctx.now, *values)
        except EvalError as err:
            return _from(err)


#: Durations (seconds) that ``_Duration`` words in C; beyond, times.duration_of does.
cdef double _DURATION_BOUND = <double>(1LL << 53)
cdef long long _DURATION_INT_BOUND = 1LL << 62
cdef int _SHOWN_UNITS = times.SHOWN_UNITS
cdef const char* _DURATION_UNITS = "dhms"
cdef long long[4] _DURATION_SIZES = [86400, 3600, 60, 1]


@cython.no_gc
cdef class _Duration(_Node):
    """duration(x): times.duration_of (times.human_duration) of an int or a finite float in
    C; any other value (and the error it gets) in Python. Reasons report durations (a
    credential's age): a Python call and its formatting were ~14,000 instructions."""
    cdef _Node arg
    cdef object impl  # times.duration_of

    cdef object ev(self, _Context ctx):
        cdef object value = self.arg.ev(ctx)
        cdef long long whole, amount, millis
        cdef double seconds
        cdef int overflow = 0, shown = 0, i
        cdef bint negative
        cdef char text[96]
        cdef int at = 0
        if type(value) is _Err:
            return value
        if type(value) is int:
            whole = PyLong_AsLongLongAndOverflow(value, &overflow)
            if overflow or not (-_DURATION_INT_BOUND <= whole <= _DURATION_INT_BOUND):
                return self.slow(ctx, value)
            negative = whole < 0
            if negative:
                whole = -whole
            if whole == 0:
                return "0s"
        elif type(value) is float:
            seconds = <double>value
            if not isfinite(seconds) or fabs(seconds) >= _DURATION_BOUND:
                return self.slow(ctx, value)
            negative = seconds < 0
            seconds = fabs(seconds)
            if seconds < 1:
                millis = <long long>floor(seconds * 1000)  # as Python: math.floor(seconds * 1000)
                if millis == 0:
                    return "0s"
                at = snprintf(text, sizeof(text), "%s%lldms", "-" if negative else "", millis)
                return text[:at].decode("ascii")
            whole = <long long>floor(seconds)
        else:
            return self.slow(ctx, value)
        if negative:
            text[0] = b'-'
            at = 1
        for i in range(4):  # the largest unit first, at most three shown, the rest cut
            amount = whole // _DURATION_SIZES[i]
            whole = whole % _DURATION_SIZES[i]
            if shown or amount:
                shown += 1
                if amount:
                    at += snprintf(text + at, sizeof(text) - at, "%lld%c", amount, _DURATION_UNITS[i])
            if shown == _SHOWN_UNITS:
                break
        return text[:at].decode("ascii")

    cdef object slow(self, _Context ctx, object value):
        try:
            return self.impl(ctx.now, value)
        except EvalError as err:
            return _from(err)


@cython.no_gc
cdef class _Time(_Node):
    """time(x) and age(x): the hot built-ins, with the C time parser."""
    cdef _Node arg
    cdef bint age

    cdef object ev(self, _Context ctx):
        cdef object value = self.arg.ev(ctx)
        cdef object now
        cdef long long t
        cdef int kind
        if type(value) is _Err:
            return value
        if self.age:
            kind = ctx.now_c()
            if kind != 3 and _time_c(value, &t):
                # The common case in C: no Python int for either time, no Python subtraction.
                # (Python's float - int is float(int) - float, exact for any time _time_c reads.)
                if kind == 1:
                    return ctx.now_int - t
                return ctx.now_float - <double>t
            now = ctx.now_or_err()
            if type(now) is _Err:
                return now
        try:
            value = _time_of(value)
        except EvalError as err:
            return _from(err)
        return now - value if self.age else value


@cython.no_gc
cdef class _Defined(_Node):
    cdef _Node operand

    cdef object ev(self, _Context ctx):
        return type(self.operand.ev(ctx)) is not _Err


@cython.no_gc
cdef class _Cached(_Node):
    cdef Py_ssize_t slot
    cdef _Node inner

    cdef object ev(self, _Context ctx):
        cdef object value
        cdef PyObject* held
        cdef _Slots more
        if self.slot < _INLINE_SLOTS:
            held = ctx.inline_slots[self.slot]
            if held != NULL:
                return <object>held
            value = self.inner.ev(ctx)
            Py_INCREF(value)
            ctx.inline_slots[self.slot] = <PyObject*>value
            ctx.inline_filled[ctx.filled] = <unsigned char>self.slot
            ctx.filled += 1
            return value
        more = ctx.more
        if more is None:
            more = ctx.more_slots()
        held = more.values[self.slot]
        if held != NULL:
            return <object>held
        value = self.inner.ev(ctx)  # (a node is never below itself: its slot is still empty)
        Py_INCREF(value)
        more.values[self.slot] = <PyObject*>value
        more.filled[more.count] = self.slot
        more.count += 1
        return value


#: A str key and what it leads to (a _Switch's subtree, a _Lookup's case) in an open-addressing
#: C table; ``key`` and ``tree`` are borrowed from the dict beside the table.
cdef struct _Branch:
    Py_hash_t hash
    PyObject* key
    PyObject* tree


cdef _Branch* _new_branches(Py_ssize_t count, size_t* mask):
    """An empty table for ``count`` keys from the link arena: a power of two of places, at
    most half full; ``mask`` is its size less one."""
    cdef size_t size = 4
    while size < 2 * <size_t>count:
        size *= 2
    cdef _Branch* table = <_Branch*>pdp_arena_raw(size * sizeof(_Branch))
    memset(table, 0, size * sizeof(_Branch))
    mask[0] = size - 1
    return table


cdef void _put_branch(_Branch* table, size_t mask, str key, object tree):
    """Add ``key`` ⇒ ``tree`` (both borrowed: the caller's dict holds them)."""
    cdef Py_hash_t h = hash(key)
    cdef size_t i = <size_t>h & mask
    while table[i].key != NULL:
        i = (i + 1) & mask
    table[i].hash, table[i].key, table[i].tree = h, <PyObject*>key, <PyObject*>tree


cdef inline PyObject* _find_branch(const _Branch* table, size_t mask, str value) noexcept:
    """What ``value`` leads to in the table; NULL when it is not a key."""
    cdef Py_hash_t h = _str_hash(<PyObject*>value)
    cdef size_t i = <size_t>h & mask
    cdef const _Branch* b
    while True:
        b = &table[i]
        if b.key == NULL:
            return NULL
        if b.hash == h and (b.key == <PyObject*>value or _same_text(b.key, <PyObject*>value)):
            return b.tree
        i = (i + 1) & mask


@cython.no_gc
cdef class _Lookup(_Node):
    """A node's value per key of a data table, made at load (compile/tabulate.py)."""
    cdef _Node key, default
    cdef dict cases  # str ⇒ _Node
    # ``cases`` as an open-addressing C table of mask + 1 places (at most half full) from the
    # link arena right after the node, as a _Switch's: a look-up reads the node and its table,
    # not a dict object and its keys object elsewhere (several cold lines a request).
    cdef _Branch* table
    cdef size_t mask

    def __dealloc__(self):
        if self.table != NULL:
            pdp_arena_release(self.table)

    cdef object ev(self, _Context ctx):
        cdef object value = self.key.ev(ctx)
        cdef PyObject* case
        if type(value) is str:
            case = _find_branch(self.table, self.mask, <str>value)
            if case != NULL:
                return (<_Node>case).ev(ctx)
        return self.default.ev(ctx)


# ---- where linked objects live --------------------------------------------------------
#
# A request reads the nodes of the one or two leaves it reaches. At 10,000 rules those leaves
# are cold, and CPython's allocator would scatter their objects: one pool of pages per size
# class, and the holes that compiling left in them. So every object made while linking
# (nodes, entries, leaves, switches, rules) comes from a bump allocator instead, in link
# order, which is leaf by leaf (Evaluator._link_leaves): a leaf's objects share a few cache
# lines and one page. Its chunks are 2 MiB, aligned, and asked to be one huge page each
# (one TLB entry where 512 small pages would need as many). A chunk is given back when the
# last object in it is freed and a newer chunk has taken over; the open chunk starts over
# when it is empty.

cdef extern from *:
    """
    #include <sys/mman.h>
    #include <stdint.h>
    #include <string.h>

    #define PDP_CHUNK ((size_t)2 << 20)
    typedef struct { Py_ssize_t live; int open; } pdp_chunk;  /* at the start of its chunk */
    static pdp_chunk *pdp_open = NULL;  /* the chunk objects are taken from */
    static char *pdp_next = NULL;  /* its free part */
    static char *pdp_end = NULL;
    #define PDP_FIRST ((char *)pdp_open + 64)

    static void pdp_close_open(void) {
        if (pdp_open == NULL) return;
        pdp_open->open = 0;
        if (pdp_open->live == 0) munmap(pdp_open, PDP_CHUNK);
        pdp_open = NULL;
        pdp_next = pdp_end = NULL;
    }

    static int pdp_new_chunk(void) {
        /* Twice the size, then trimmed to an aligned chunk: the chunk of an object is its
           address rounded down. */
        char *raw = (char *)mmap(NULL, 2 * PDP_CHUNK, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == (char *)MAP_FAILED) return -1;
        char *base = (char *)(((uintptr_t)raw + PDP_CHUNK - 1) & ~(uintptr_t)(PDP_CHUNK - 1));
        if (base > raw) munmap(raw, (size_t)(base - raw));
        if (raw + 2 * PDP_CHUNK > base + PDP_CHUNK)
            munmap(base + PDP_CHUNK, (size_t)(raw + 2 * PDP_CHUNK - (base + PDP_CHUNK)));
    #ifdef MADV_HUGEPAGE
        madvise(base, PDP_CHUNK, MADV_HUGEPAGE);  /* a hint: small pages when refused */
    #endif
        pdp_close_open();
        pdp_open = (pdp_chunk *)base;
        pdp_open->live = 0;
        pdp_open->open = 1;
        pdp_next = PDP_FIRST;
        pdp_end = base + PDP_CHUNK;
        return 0;
    }

    static PyObject *pdp_arena_alloc(PyTypeObject *type, Py_ssize_t nitems) {
        size_t size = ((size_t)type->tp_basicsize + 7) & ~(size_t)7;
        (void)nitems;  /* fixed-size types only (pdp_use_arena) */
        if (pdp_next == NULL || (size_t)(pdp_end - pdp_next) < size) {
            if (pdp_new_chunk() < 0) return PyErr_NoMemory();
        }
        PyObject *obj = (PyObject *)pdp_next;
        pdp_next += size;
        pdp_open->live++;
        memset(obj, 0, size);
        return PyObject_Init(obj, type);
    }

    static void pdp_arena_free(void *obj) {
        pdp_chunk *chunk = (pdp_chunk *)((uintptr_t)obj & ~(uintptr_t)(PDP_CHUNK - 1));
        if (--chunk->live > 0) return;
        if (!chunk->open) munmap(chunk, PDP_CHUNK);
        else pdp_next = PDP_FIRST;  /* nothing left in the open chunk: start it over */
    }

    /* ``size`` bytes from the open chunk, for an object made just before (an array of its):
       given back by pdp_arena_release. */
    static void *pdp_arena_raw(size_t size) {
        size = (size + 7) & ~(size_t)7;
        if (size > PDP_CHUNK / 4) { PyErr_NoMemory(); return NULL; }
        if (pdp_next == NULL || (size_t)(pdp_end - pdp_next) < size) {
            if (pdp_new_chunk() < 0) { PyErr_NoMemory(); return NULL; }
        }
        void *memory = pdp_next;
        pdp_next += size;
        pdp_open->live++;
        return memory;
    }

    #define pdp_arena_release pdp_arena_free

    /* Allocate the objects of each type of the tuple ``types`` from the chunks. */
    static int pdp_use_arena(PyObject *types) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(types); i++) {
            PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(types, i);
            if (PyType_IS_GC(t) || t->tp_itemsize != 0 || t->tp_basicsize > 1024) {
                PyErr_Format(PyExc_TypeError, "%s cannot live in the link arena", t->tp_name);
                return -1;
            }
            t->tp_alloc = pdp_arena_alloc;
            t->tp_free = pdp_arena_free;
        }
        return 0;
    }
    """
    int pdp_use_arena(object types) except -1
    void* pdp_arena_raw(size_t size) except NULL
    void pdp_arena_release(void* memory)


#: The key of ``memo`` (otherwise id(IR node) ⇒ its object) under which linking counts the uses
#: of each CACHED slot, in the order first linked (see _renumber_slots).
cdef str _SLOT_USES = "slot uses"
#: The key of ``memo`` under which linking keeps the value of each CIDR constant that a
#: _Compare holds (id(IR node) ⇒ CidrSet).
cdef str _CONSTANTS = "constants"


cdef _Node _link(tuple node, dict memo):
    cdef object key = id(node)
    cdef _Node linked = memo.get(key)
    cdef dict uses
    if linked is not None:
        if type(linked) is _Cached:
            uses = memo[_SLOT_USES]
            uses[(<_Cached>linked).slot] += 1
        return linked
    linked = _link_new(node, memo)
    memo[key] = linked
    return linked


cdef object _cidr_constant(tuple node, dict memo):
    """The CidrSet of a CIDR constant that a compare holds, made once for every compare
    that shares the constant."""
    cdef dict constants = memo.setdefault(_CONSTANTS, {})
    found = constants.get(id(node))
    if found is None:
        found = constants[id(node)] = cidr_set(node[1])
    return found


#: The cases of a lookup that a compare is distributed over at most (see _link_new): one
#: node per case (and the ranges of each cidr), so not for tables of thousands of rows.
cdef Py_ssize_t _COMPARED_CASES = 256
#: Kinds of a lookup's cases a compare is distributed over: values known at load.
cdef tuple _GROUND = (ir.CONST, ir.CIDR, ir.ERROR)
#: The key of ``memo`` under which linking keeps the IR nodes it made (memo is keyed by id:
#: they must outlive linking).
cdef str _MADE = "made"


cdef tuple _compared(tuple compare, tuple right, dict memo):
    """``compare`` with ``right`` as its right operand: an IR node kept alive in ``memo``."""
    cdef tuple made = (compare[0], compare[1], compare[2], right)
    memo.setdefault(_MADE, []).append(made)
    return made


cdef _Node _link_new(tuple node, dict memo):
    cdef int op = node[0]
    cdef _Const c
    cdef _Error e
    cdef _Path p
    cdef _Path1 p1
    cdef _Path2 p2
    cdef _Attr a
    cdef _Index x
    cdef _IndexKey xk
    cdef _List l
    cdef _Not n
    cdef _Logic g
    cdef _Compare m
    cdef _InCidr ic
    cdef Py_ssize_t n4, n6
    cdef _EqStr q
    cdef _InStrs s
    cdef _MatchGlob mg
    cdef _Call f
    cdef _Duration du
    cdef _Time t
    cdef _Defined d
    cdef _Cached k
    cdef _Lookup u
    cdef dict uses
    if op == ir.CONST:
        c = _Const.__new__(_Const)
        c.value = node[1]
        return c
    if op == ir.CIDR:
        c = _Const.__new__(_Const)
        c.value = cidr_set(node[1])
        return c
    if op == ir.ERROR:
        e = _Error.__new__(_Error)
        e.err = _Err(node[1])
        return e
    if op == ir.PATH and len(node[2]) == 1 and node[1] != TOKEN_ROOT:  # (the token root may be absent)
        p1 = _Path1.__new__(_Path1)
        p1.root, p1.key, p1.missing = ir.ROOTS.index(node[1]), intern(node[2][0]), _Err(missing(node[3][1]))
        return p1
    if op == ir.PATH and len(node[2]) == 2 and node[1] != TOKEN_ROOT:
        p2 = _Path2.__new__(_Path2)
        p2.root, p2.key1, p2.key2 = ir.ROOTS.index(node[1]), intern(node[2][0]), intern(node[2][1])
        p2.text1, p2.missing1, p2.missing2 = node[3][1], _Err(missing(node[3][1])), _Err(missing(node[3][2]))
        return p2
    if op == ir.PATH:
        p = _Path.__new__(_Path)
        p.root = ir.ROOTS.index(node[1])
        p.keys = tuple(intern(k) for k in node[2])  # identity hits in dict look-ups
        p.texts = tuple(node[3])
        p.missing = tuple(_Err(missing(t)) for t in node[3][1:])
        p.absent = _Err(missing(node[3][0]))
        p.n = len(p.keys)
        return p
    if op == ir.NOW:
        return _Now.__new__(_Now)
    if op == ir.ATTR:
        a = _Attr.__new__(_Attr)
        a.obj, a.name, a.obj_text, a.missing = _link(node[1], memo), intern(node[2]), node[3], _Err(missing(node[4]))
        return a
    if op == ir.INDEX and node[2][0] == ir.CONST and type(node[2][1]) is str:
        xk = _IndexKey.__new__(_IndexKey)
        xk.obj, xk.key, xk.obj_text = _link(node[1], memo), intern(node[2][1]), node[3]
        xk.missing = _Err(_index_message({}, xk.key, xk.obj_text))
        return xk
    if op == ir.INDEX:
        x = _Index.__new__(_Index)
        x.obj, x.key, x.obj_text = _link(node[1], memo), _link(node[2], memo), node[3]
        return x
    if op == ir.LIST:
        l = _List.__new__(_List)
        l.items = tuple(_link(i, memo) for i in node[1])
        return l
    if op == ir.NOT:
        n = _Not.__new__(_Not)
        n.operand = _link(node[1], memo)
        return n
    if op == ir.AND or op == ir.OR:
        g = _Logic.__new__(_Logic)
        g.settles = op == ir.OR
        g.name = "or" if op == ir.OR else "and"
        if node[1]:
            g.items = <PyObject**>pdp_arena_raw(len(node[1]) * sizeof(PyObject*))
            for item in node[1]:  # (the node's own operands: none is below itself)
                operand = _link(item, memo)
                Py_INCREF(operand)
                g.items[g.n] = <PyObject*>operand
                g.n += 1
        return g
    if op == ir.COMPARE and node[3][0] == ir.LOOKUP and len(node[3][2]) <= _COMPARED_CASES \
            and all(case[0] in _GROUND for case in node[3][2].values()):
        # ``x in cidr(data.networks[identity.env])``: the compare with each case of the table
        # (an _InCidr of its ranges, a compare with its constant) and with the default, made
        # now, looked up by the key as the table was. (The table's key is read before x, not
        # after: reads fail as values, not as effects, and x's error comes first either way,
        # for the case and the default compare x first.)
        return _link_new((ir.LOOKUP, node[3][1],
                          {key: _compared(node, case, memo) for key, case in node[3][2].items()},
                          _compared(node, node[3][3], memo)), memo)
    if op == ir.COMPARE and (node[1] == "in" or node[1] == "not in") and node[3][0] == ir.CIDR:
        networks = _cidr_constant(node[3], memo)
        n4, n6 = len(networks._v4[0]), len(networks._v6[0])
        if 2 * n4 + 4 * n6 <= _INLINE_RANGE_WORDS:
            ic = _InCidr.__new__(_InCidr)
            ic.words = <unsigned long long*>pdp_arena_raw((2 * n4 + 4 * n6 + 1) * sizeof(unsigned long long))
            ic.n4, ic.n6, ic.negate, ic.networks = n4, n6, node[1] == "not in", networks
            _fill_ranges(networks, ic.words, ic.words + 2 * n4)
            ic.operand = _link(node[2], memo)
            return ic
    if op == ir.COMPARE:
        m = _Compare.__new__(_Compare)
        m.op, m.left = _OP_CODES[node[1]], _link(node[2], memo)
        right = node[3]
        if right[0] == ir.CONST:
            m.value = right[1]
        elif right[0] == ir.CIDR:
            m.value = _cidr_constant(right, memo)
        else:
            m.right = _link(right, memo)
        return m
    if op == ir.EQ_STR:
        q = _EqStr.__new__(_EqStr)
        q.operand, q.text, q.negate = _link(node[1], memo), intern(node[2]), node[3]
        return q
    if op == ir.IN_STRS:
        s = _InStrs.__new__(_InStrs)
        s.texts, s.negate = frozenset(intern(t) for t in node[2]), node[3]
        if len(s.texts) <= _INLINE_TEXTS and all(type(text) is str for text in s.texts):
            s.table = <_Text*>pdp_arena_raw(max(len(s.texts), 1) * sizeof(_Text))
            for text in s.texts:
                s.table[s.n].hash, s.table[s.n].text = hash(text), <PyObject*>text
                s.n += 1
        s.operand = _link(node[1], memo)  # (after the table: the node and its texts side by side)
        return s
    if op == ir.MATCH_GLOB:
        mg = _MatchGlob.__new__(_MatchGlob)
        glob = compile_glob(node[2])
        mg.operand, mg.match, mg.pattern = _link(node[1], memo), glob.match, node[2]
        mg.one_star = glob.one_star is not None
        mg.literal = "*" not in node[2] and "?" not in node[2]
        if mg.one_star:
            mg.prefix, mg.suffix = glob.one_star
        return mg
    if op == ir.CALL and (node[1] == "time" or node[1] == "age"):
        t = _Time.__new__(_Time)
        t.arg, t.age = _link(node[2][0], memo), node[1] == "age"
        return t
    if op == ir.CALL and node[1] == "duration" and BUILTINS["duration"].impl is times.duration_of:
        du = _Duration.__new__(_Duration)
        du.arg, du.impl = _link(node[2][0], memo), times.duration_of
        return du
    if op == ir.CALL:
        f = _Call.__new__(_Call)
        f.impl = BUILTINS[node[1]].impl
        f.args = tuple(_link(a, memo) for a in node[2])
        return f
    if op == ir.DEFINED:
        d = _Defined.__new__(_Defined)
        d.operand = _link(node[1], memo)
        return d
    if op == ir.LOOKUP:
        u = _Lookup.__new__(_Lookup)
        u.table = _new_branches(len(node[2]), &u.mask)  # (before the cases: beside the node)
        u.key, u.default = _link(node[1], memo), _link(node[3], memo)
        u.cases = {intern(key): _link(case, memo) for key, case in node[2].items()}  # (strs: verify.py)
        for key, case in u.cases.items():
            _put_branch(u.table, u.mask, key, case)
        return u
    if op == ir.CACHED:
        k = _Cached.__new__(_Cached)
        k.slot, k.inner = node[1], _link(node[2], memo)
        uses = memo.setdefault(_SLOT_USES, {})
        uses[k.slot] = uses.get(k.slot, 0) + 1
        return k
    raise ValueError(f"unknown opcode {op}")


cdef void _renumber_slots(dict memo):
    """Number the CACHED slots so a request touches few cache lines of them: the most used
    (paths that every leaf reads) in the context's inline slots, the others in the order
    they were linked, which is leaf by leaf, so one leaf's slots are neighbours. A slot's
    number is only where its value is kept during a request: any one-to-one numbering
    within the program's count decides alike."""
    cdef dict uses = memo.get(_SLOT_USES)
    cdef dict number = {}
    if not uses:
        return
    for slot in sorted(uses, key=lambda s: -uses[s])[:_INLINE_SLOTS]:  # ties: first linked first
        number[slot] = len(number)
    for slot in uses:
        if slot not in number:
            number[slot] = len(number)
    for node in memo.values():
        if type(node) is _Cached:
            (<_Cached>node).slot = number[(<_Cached>node).slot]


# ---- rules and trees ---------------------------------------------------------------------

@cython.no_gc
cdef class _Rule:
    cdef str id
    cdef bint forbid
    cdef tuple reason  # parts (str or _Node); None when the message is static
    cdef object annotations
    cdef object static_reason


@cython.no_gc
cdef class _Entry:
    """A rule in one leaf, with the clauses to check there (None: nothing to check)."""
    cdef _Rule rule
    cdef _Node target, when, unless
    cdef int ft, fw, fu  # the clauses' numbers in the evaluator's _Skeleton (-1: none)


# ---- the boolean skeleton, evaluated flat ------------------------------------------------
#
# A rule's target, when and unless are trees of and/or/not over atoms. The skeleton numbers
# their nodes once at load (C structs) and runs each tree as a branch program
# (compile/branches.py: per atom, the next step when it is true and when it is false),
# keeping values per request as bytes (false, true, or "other": an error or a non-boolean
# value, kept aside): no virtual call, no Python bool, no visit of the and/or/not nodes,
# each shared node (a policy's target, a test used by many rules) evaluated once.
# Atoms fixed by one request path (compile/atoms.py) take their values from that path's
# table: every such atom's value per value of the path met before; atoms of two such paths
# (``context.env in identity.scopes``) from a table per pair of the two paths' rows.

from cpython.list cimport PyList_GET_ITEM
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.string cimport memset
from ..compile import atoms as _atoms
from ..compile import branches as _branches

cdef enum:
    _B_AND, _B_OR, _B_NOT

#: A node, 16 bytes: an atom's linked _Node is read from here (borrowed: the skeleton's
#: ``atoms`` holds it), not from that list's items, one cache line more per atom evaluated.
cdef struct _BNode:
    PyObject* atom  # an atom's _Node; NULL for and/or/not
    int group  # an atom: its path group, or -1 (and/or/not: -1)
    int place  # an atom: its place in the group's values; and/or/not evaluated as a whole:
               # its program's first step (else -1)

#: A step of a branch program: the node read, the steps after it (or _TRUE / _FALSE: the
#: program's value), and where the node's code is read first, as a leaf step's (_LStep:
#: ``_Flat.lcodes[group][member]``, no _BNode read before it). The operator above the node
#: (the words of a non-boolean's error) is in the skeleton's ``parents``, read on an error.
cdef struct _Step:
    int node
    int on_false
    int on_true
    unsigned short group
    unsigned short member

cdef enum:
    _TRUE = -1
    _FALSE = -2

#: A step of a leaf's program (compile/branches.py, leaf_programs and relative_steps), the
#: part every step reads (8 bytes, eight to a cache line: a leaf's program is read once a
#: request, mostly cold, a few steps of each rule): the next step when the node read is false
#: and when true, as its forward distance (``d << 1 | applies``: ``applies``, the rule of the
#: step's _LOut applies; ``d`` 0: the leaf is done), and where the node's code is read first:
#: ``_Flat.lcodes[group][member]`` (a path group's place copied from its _BNode, its group's
#: number + _L_GROUPS; _L_VAL: a node of no group, at its number, the request's value of it
#: once known; _L_NONE: a number or place too large for 16 bits, and value() reads it;
#: _L_TRUE: no node, the value true). Every step reads its code the same way: one test (is it
#: a boolean?) and no branch on the step's kind. The node itself is in the step's _LOut.
cdef struct _LStep:
    unsigned short next[2]
    unsigned short group
    unsigned short member

cdef enum:
    _L_NONE = 0  # lcodes[_L_NONE]: the skeleton's codes "not known" (3)
    _L_TRUE = 1  # lcodes[_L_TRUE]: a code 1 (true)
    _L_VAL = 2  # lcodes[_L_VAL]: _Flat.val, the request's values by node (a node of no group)
    _L_GROUPS = 3  # lcodes[g + _L_GROUPS] is codes[g]
    _L_MOST = 0xFFFF

cdef unsigned char _CODE_TRUE = 1

#: A leaf's start when it has no program: a move in it past _LEAF_REACH steps (a policy of
#: thousands of rules in one leaf; compile/branches.py, relative_steps); decided rule by rule.
cdef enum:
    _NO_PROGRAM = -2

#: The farthest move of a leaf step (a module attribute: tests lower it).
_LEAF_REACH = _branches.REACH

#: The rest of a leaf step, read only when a rule ends there or its code is not known: in
#: _Skeleton.lentries the rule (its place in the leaf) that applies, and here the node read
#: (-1: none), and on an "other" value the rules that fail (that rule to ``last``, on
#: ``clause``, in the words of ``parent``: the operator above the node, -1 when the node is
#: the clause) and the step after them (``fail``, a distance as _LStep's).
cdef struct _LOut:
    int node
    int last
    int fail
    signed char parent
    signed char clause

#: A path group's table: values kept at most (fewer when the group has many atoms: a bound
#: on memory), and the look-ups after which a group that misses more than it hits stops.
cdef Py_ssize_t _GROUP_CELLS = 1 << 16
cdef Py_ssize_t _GROUP_WINDOW = 256
cdef enum:
    _SEEN_WORDS = 128  # the bits of values missed (_Kept.met): 8,192
    _SEEN_MOST = 1024  # bits set before they are all cleared (an eighth: few false "met")


cdef enum:
    _ROW_INLINE = 40  # the codes of a row of at most this many atoms: in the row object itself


@cython.final
@cython.no_gc  # request values only
cdef class _Row:
    """The values of a path group's atoms for one value of the path, each filled when first
    needed: ``codes[i]`` 0 false, 1 true, 2 other (its object in ``objs[i]``), 3 not yet
    known. Shared by the requests that carry that value; ``id`` numbers the rows a table
    keeps (-1: not kept), for the tables of two paths. A small group's codes are in the
    object (one allocation, and a look-up reads one place in memory, not two); ``objs`` is
    made when the first "other" value is kept (most rows hold booleans only)."""
    cdef unsigned char* codes
    cdef PyObject** objs
    cdef Py_ssize_t n
    cdef long long id
    cdef unsigned char small[_ROW_INLINE]

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.objs != NULL:
            for i in range(self.n):
                Py_XDECREF(self.objs[i])
        if self.codes != self.small:
            free(self.codes)
        free(self.objs)


cdef _Row _new_row(Py_ssize_t n):
    cdef _Row row = _Row.__new__(_Row)
    row.n = n
    row.id = -1
    if n <= _ROW_INLINE:
        row.codes = row.small
    else:
        row.codes = <unsigned char*>malloc(n)
        if row.codes == NULL:
            raise MemoryError()
    memset(row.codes, 3, n)
    return row


#: Rules a request can meet (the largest forbid leaf and permit leaf) from which run() uses
#: the skeleton.
cdef Py_ssize_t _FLAT_FROM = 32
cdef enum:
    _FEW_RULES = 32  # rules in a leaf that Evaluator._phase_few decides (every leaf, when not flat)


@cython.no_gc  # holds linked nodes and tables of request values: no cycles
cdef class _Kept:
    """Atoms whose values are kept in rows (per value of a path: _Group; of two: _Pair)."""
    cdef tuple atoms  # _Nodes
    cdef int* nodes  # their numbers in the _Skeleton
    cdef Py_ssize_t capacity, lookups, misses
    cdef bint off  # the values do not repeat: the atoms are evaluated one by one
    # The values missed, a bit per hash, cleared when _SEEN_MOST are set: a value gets a row
    # when missed the second time, so values met once (ids, times) never cost a row (its
    # malloc, its cells filled, a place in the table that a repeating value could have had).
    # (In its own allocation: the fields above and the group's are read on every look-up.)
    cdef unsigned long long* seen  # _SEEN_WORDS
    cdef Py_ssize_t nseen  # bits set

    def __dealloc__(self):
        free(self.nodes)
        free(self.seen)

    cdef inline bint counted(self, bint missed) noexcept:
        """Count a look-up; True when, over the last window, most missed (ids, times: values
        that do not repeat): the caller turns the tables off."""
        self.lookups += 1
        self.misses += missed
        if self.lookups < _GROUP_WINDOW:
            return False
        missed = 2 * self.misses > self.lookups
        self.lookups = self.misses = 0
        return missed

    cdef inline bint met(self, unsigned long long h) noexcept:
        """Whether a value of hash ``h`` was missed before (or one whose hash shares its
        bit: it then gets its row a request early); marks it. (Not cleared with the window:
        a value met once a round of requests longer than the window still gets its row.)"""
        cdef unsigned long long x = (h * 0xC2B2AE3D27D4EB4FULL) >> 51  # 13 bits
        cdef unsigned long long bit = 1ULL << (x & 63)
        if self.seen[x >> 6] & bit:
            return True
        if self.nseen >= _SEEN_MOST:
            memset(self.seen, 0, _SEEN_WORDS * sizeof(unsigned long long))
            self.nseen = 0
        self.seen[x >> 6] |= bit
        self.nseen += 1
        return False

    cdef object value(self, _Row row, Py_ssize_t i, _Context ctx):
        """Atom ``i``'s value for the request whose values have ``row``."""
        cdef unsigned char code = row.codes[i]
        if code == 1:
            return True
        if code == 0:
            return False
        if code == 2:
            return <object>row.objs[i]
        cdef object v = (<_Node>PyTuple_GET_ITEM(self.atoms, i)).ev(ctx)
        if v is True:
            row.codes[i] = 1
        elif v is False:
            row.codes[i] = 0
        else:
            if type(v) is _Err:
                (<_Err>v).text()  # worded now: it may quote the request's (mutable) list
            if row.codes[i] == 3:  # (not filled meanwhile by another thread)
                if row.objs == NULL:
                    row.objs = <PyObject**>calloc(row.n, sizeof(PyObject*))
                    if row.objs == NULL:
                        raise MemoryError()
                Py_INCREF(v)
                row.objs[i] = <PyObject*>v
                row.codes[i] = 2
        return v


cdef extern from *:
    """
    /* n1 when c, else n0, by a branch, never a select (cmov): a leaf's next step then
       is predicted, and the CPU reads the steps ahead of the codes they wait for, instead
       of each step's address waiting on the last step's chain of three loads (the empty
       asm keeps gcc from turning the branch into a select). */
    static inline int pdp_pick(int c, int n0, int n1) {
        if (c) { __asm__ volatile(""); return n1; }
        return n0;
    }
    /* A str's hash: kept in the string once computed (-1: not yet). */
    static inline Py_hash_t pdp_str_hash(PyObject *s) {
        Py_hash_t h = ((PyASCIIObject *)s)->hash;
        return h != -1 ? h : PyObject_Hash(s);
    }
    """
    Py_hash_t _str_hash "pdp_str_hash"(PyObject* s) except? -1
    int _pick "pdp_pick"(int c, int n0, int n1) noexcept
    int _rich_bool "PyObject_RichCompareBool"(PyObject* a, PyObject* b, int op) noexcept


cdef inline bint _same_int(PyObject* a, PyObject* b) noexcept:
    """``a == b`` for two exact ints (no Python code runs, nothing fails)."""
    return _rich_bool(a, b, 2) == 1  # Py_EQ


#: The kinds of values a path group keeps rows for: values that dicts hold equal (1, 1.0,
#: true) compare and fail differently, so the kind is part of the key.
cdef enum:
    _K_EMPTY = 0
    _K_STR = 1
    _K_INT = 2
    _K_BOOL = 3
    _K_LIST = 4  # a list of at most 16 strs, by its items (kept as a tuple)


cdef struct _Held:
    Py_hash_t hash
    PyObject* key  # owned: the str, int or bool, or a list's items as a tuple
    PyObject* row  # owned _Row
    int kind  # _K_EMPTY: a free place


cdef inline bint _same_items(PyObject* items, list value) noexcept:
    """The tuple of strs ``items`` holds the strs of ``value`` in order."""
    cdef Py_ssize_t i, n = len(value)
    cdef PyObject* a
    cdef PyObject* b
    if PyTuple_GET_SIZE(<object>items) != n:
        return False
    for i in range(n):
        a = PyTuple_GET_ITEM(<object>items, i)
        b = PyList_GET_ITEM(value, i)
        if a != b and not _same_text(a, b):
            return False
    return True


@cython.final
@cython.no_gc
cdef class _Group(_Kept):
    """The atoms fixed by one request path, and their values per value of the path met."""
    cdef _Node path
    cdef str path_text
    # A _Row per value of the path (strs, ints, bools, lists of strs; other values: floats,
    # maps, a missing path, are evaluated as they are) in an open-addressing C table keyed by
    # (kind, hash, value): no Python object made to look a value up, a list's items compared
    # in place. ``size`` a power of two (0: no table yet). The rows live as long as the
    # group, turned off or not: a request holds the rows it read borrowed (_Flat.groups).
    cdef _Held* table
    cdef Py_ssize_t size, used
    cdef long long kept  # rows kept (the next row's id)

    def __dealloc__(self):
        cdef Py_ssize_t i
        for i in range(self.size):
            if self.table[i].kind != _K_EMPTY:
                Py_XDECREF(self.table[i].key)
                Py_XDECREF(self.table[i].row)
        free(self.table)

    cdef inline Py_ssize_t find(self, int kind, Py_hash_t h, object value) noexcept:
        """Where (kind, value) is in the table, or the free place it would go."""
        cdef size_t mask = <size_t>self.size - 1
        cdef size_t i = <size_t>((<unsigned long long>h * 0x9E3779B97F4A7C15ULL) >> 32) & mask
        cdef _Held* e
        while True:
            e = &self.table[i]
            if e.kind == _K_EMPTY:
                return i
            if e.kind == kind and e.hash == h:
                if e.key == <PyObject*>value:
                    return i
                if kind == _K_STR:
                    if _same_text(e.key, <PyObject*>value):
                        return i
                elif kind == _K_LIST:
                    if _same_items(e.key, <list>value):
                        return i
                elif kind == _K_INT:
                    if _same_int(e.key, <PyObject*>value):
                        return i
            i = (i + 1) & mask

    cdef PyObject* unkept(self) noexcept:
        """None, for a value no table keeps (a map, a float, a missing path: an error, a long
        list or one of non-strs), counted as a miss: a path whose values are mostly such is
        turned off like one whose values do not repeat (``context.headers``, a map or
        missing; an optional field mostly missing), and costs nothing per request after."""
        if self.counted(True):
            self.off = True
        return Py_None

    cdef int grow(self) except -1:
        cdef Py_ssize_t i, old_size = self.size
        cdef _Held* old = self.table
        cdef Py_ssize_t size = 64 if old_size == 0 else 2 * old_size
        cdef _Held* table = <_Held*>calloc(size, sizeof(_Held))
        cdef size_t j, mask = <size_t>size - 1
        if table == NULL:
            raise MemoryError()
        for i in range(old_size):
            if old[i].kind != _K_EMPTY:
                j = <size_t>((<unsigned long long>old[i].hash * 0x9E3779B97F4A7C15ULL) >> 32) & mask
                while table[j].kind != _K_EMPTY:
                    j = (j + 1) & mask
                table[j] = old[i]
        self.table, self.size = table, size
        free(old)
        return 0

    cdef PyObject* row(self, _Context ctx) except NULL:
        """The _Row of this request's value of the path, or None (evaluate the atoms);
        borrowed: the table keeps its rows as long as the group lives."""
        if self.off:
            return Py_None
        cdef object value = self.path.ev(ctx)
        cdef type t = type(value)
        cdef int kind
        cdef Py_hash_t h, hi
        cdef Py_ssize_t i, n
        cdef PyObject* item
        if t is str:
            kind, h = _K_STR, _str_hash(<PyObject*>value)
        elif t is int:
            kind, h = _K_INT, hash(value)
        elif t is bool:
            kind, h = _K_BOOL, value is True
        elif t is list:
            n = len(<list>value)
            if n > 16:
                return self.unkept()
            kind, h = _K_LIST, <Py_hash_t>(0x27D4EB2F165667C5ULL + <unsigned long long>n)
            for i in range(n):
                item = PyList_GET_ITEM(<list>value, i)
                if type(<object>item) is not str:
                    return self.unkept()
                hi = _str_hash(item)
                h = <Py_hash_t>((<unsigned long long>h ^ <unsigned long long>hi) * 0x100000001B3ULL)
                h = <Py_hash_t>(<unsigned long long>h ^ (<unsigned long long>h >> 29))
        else:
            return self.unkept()
        cdef PyObject* row = Py_None
        cdef object made
        cdef bint missed = True
        if self.size:
            i = self.find(kind, h, value)
            if self.table[i].kind != _K_EMPTY:
                row = self.table[i].row
                missed = False
        if missed and self.kept < self.capacity and self.met(<unsigned long long>h + <unsigned long long>kind):
            # Kept: made before the table is read again (a Python allocation, during which
            # another thread may have kept the value). A value met the first time in the
            # window, or that a full table would not keep, gets no row: its atoms are
            # evaluated as they are (the request keeps their values). The window counts a
            # value's first miss only (as when every value got its row at once).
            missed = False
            made = _new_row(len(self.atoms))
            key = tuple(<list>value) if kind == _K_LIST else value
            if self.off:  # (turned off meanwhile by another thread: the atoms are evaluated)
                return Py_None
            if 2 * (self.used + 1) > self.size:
                self.grow()
            i = self.find(kind, h, value)
            if self.table[i].kind == _K_EMPTY:
                (<_Row>made).id = self.kept
                self.kept += 1
                Py_INCREF(key)
                Py_INCREF(made)
                self.table[i].hash, self.table[i].key, self.table[i].row = h, <PyObject*>key, <PyObject*>made
                self.table[i].kind = kind
                self.used += 1
            row = self.table[i].row  # (or kept meanwhile by another thread)
        if self.counted(missed):
            self.off = True
        return row


#: A place of a _Pair's table: the key (0: empty) and its owned _Row, side by side (a
#: look-up reads one place in memory, not two).
cdef struct _PairCell:
    unsigned long long key
    PyObject* row


@cython.final
@cython.no_gc
cdef class _Pair(_Kept):
    """The atoms fixed by two request paths, both of path groups (``context.env in
    identity.scopes``): their values per pair of the groups' rows met, in an open-addressing
    table keyed by the two rows' ids."""
    cdef int first, second  # the groups' numbers in the _Skeleton
    cdef _PairCell* cells
    cdef Py_ssize_t size, used  # size: a power of two

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.cells != NULL:
            for i in range(self.size):
                Py_XDECREF(self.cells[i].row)
        free(self.cells)

    cdef inline Py_ssize_t slot(self, unsigned long long key) noexcept:
        """Where ``key`` is in the table, or the empty place it would go."""
        cdef Py_ssize_t i = <Py_ssize_t>((key * 0x9E3779B97F4A7C15ULL) >> 40) & (self.size - 1)
        while self.cells[i].key != 0 and self.cells[i].key != key:
            i = (i + 1) & (self.size - 1)
        return i

    cdef void grow(self) except *:
        cdef Py_ssize_t i, j, old_size = self.size
        cdef _PairCell* old = self.cells
        cdef _PairCell* cells = <_PairCell*>calloc(2 * old_size, sizeof(_PairCell))
        if cells == NULL:
            raise MemoryError()
        self.cells, self.size = cells, 2 * old_size
        for i in range(old_size):
            if old[i].key != 0:
                j = self.slot(old[i].key)
                cells[j] = old[i]
        free(old)

    cdef PyObject* row(self, PyObject* a, PyObject* b) except NULL:
        """The _Row of the pair of rows ``a`` and ``b`` (None: a value not kept); borrowed,
        as _Group.row's."""
        if self.off or a == Py_None or b == Py_None or (<_Row>a).id < 0 or (<_Row>b).id < 0:
            return Py_None
        cdef unsigned long long key = ((<unsigned long long>(<_Row>a).id + 1) << 32) | <unsigned long long>(<_Row>b).id
        cdef Py_ssize_t i = self.slot(key)
        cdef PyObject* row = Py_None
        cdef object made
        cdef bint missed = self.cells[i].key != key
        if not missed:
            row = self.cells[i].row
        elif self.used < self.capacity and self.met(key):  # (else no row: evaluated as they are)
            missed = False  # (the window counts a pair's first miss only)
            made = _new_row(len(self.atoms))  # (a Python allocation: the table is read again after)
            if 2 * (self.used + 1) > self.size:
                self.grow()
            i = self.slot(key)
            if self.cells[i].key != key:  # (else kept meanwhile by another thread)
                Py_INCREF(made)
                self.cells[i].key, self.cells[i].row = key, <PyObject*>made
                self.used += 1
            row = self.cells[i].row
        if self.counted(missed):
            self.off = True
        return row


@cython.final
@cython.no_gc  # request values only
cdef class _Flat:
    """One request's values of the skeleton's nodes: ``val[n]`` 0 false, 1 true, 2 other (its
    object in ``obj``), 3 not known yet; the nodes valued (``done``) set back to 3, the
    objects and the path groups' values met released, when the request ends."""
    cdef unsigned char* val
    cdef int* done  # the nodes valued in this request
    cdef int ndone
    cdef PyObject** obj
    cdef int* kept  # the nodes holding an object
    cdef int nkept
    cdef PyObject** groups  # each group's _Row for the request, borrowed (NULL: not read yet; None: no row)
    # The codes of each group's _Row read (the skeleton's ``unknown``, all 3: not read, or no
    # row): ``codes[g]``, in ``lcodes`` after the leaf steps' two codes of their own (_LStep).
    cdef unsigned char** codes
    cdef unsigned char** lcodes
    cdef unsigned char* unknown
    cdef int* read  # the groups read
    cdef int nread
    cdef int n, ng
    cdef int* outs  # a leaf program's outcomes: (rule, -1 applies or the step where it failed)

    def __dealloc__(self):
        self.release()
        free(self.done)
        free(self.val)
        free(self.obj)
        free(self.kept)
        free(self.groups)
        free(self.lcodes)
        free(self.read)
        free(self.outs)

    cdef inline void release(self) noexcept:
        cdef int i
        for i in range(self.ndone):
            self.val[self.done[i]] = 3
        self.ndone = 0
        for i in range(self.nkept):
            Py_XDECREF(self.obj[self.kept[i]])
            self.obj[self.kept[i]] = NULL
        self.nkept = 0
        for i in range(self.nread):
            self.groups[self.read[i]] = NULL
            self.codes[self.read[i]] = self.unknown
        self.nread = 0

    cdef inline void valued(self, int n, unsigned char c) noexcept:
        """Node ``n``'s value for the request is ``c`` (not known before)."""
        self.val[n] = c
        if self.ndone <= self.n:  # (always: a node is valued once a request)
            self.done[self.ndone] = n
            self.ndone += 1

    cdef inline void keep(self, int n, object value):
        Py_INCREF(value)
        self.obj[n] = <PyObject*>value
        self.kept[self.nkept] = n
        self.nkept += 1


cdef _Flat _new_flat(int n, int ng, unsigned char* unknown):
    cdef _Flat f = _Flat.__new__(_Flat)
    cdef int g
    f.n, f.ng = n, ng
    f.val = <unsigned char*>malloc(n + 1)
    f.done = <int*>malloc((n + 1) * sizeof(int))
    f.obj = <PyObject**>calloc(n + 1, sizeof(PyObject*))
    f.kept = <int*>malloc((n + 1) * sizeof(int))
    f.groups = <PyObject**>calloc(ng + 1, sizeof(PyObject*))
    f.lcodes = <unsigned char**>malloc((ng + _L_GROUPS) * sizeof(unsigned char*))
    f.read = <int*>malloc((ng + 1) * sizeof(int))
    if not (f.done and f.val and f.obj and f.kept and f.groups and f.lcodes and f.read):
        raise MemoryError()
    memset(f.val, 3, n + 1)
    f.unknown = unknown
    f.lcodes[_L_NONE] = unknown
    f.lcodes[_L_TRUE] = &_CODE_TRUE
    f.lcodes[_L_VAL] = f.val
    f.codes = f.lcodes + _L_GROUPS
    for g in range(ng):
        f.codes[g] = unknown
    return f


@cython.final
@cython.no_gc  # linked nodes and groups, which never refer back
cdef class _Skeleton:
    """The and/or/not nodes and atoms of every rule's clauses, numbered (see above)."""
    cdef _BNode* nodes
    cdef _Step* steps
    cdef signed char* parents  # per step: the operator above its node (_B_AND, _B_OR, _B_NOT)
    cdef Py_ssize_t nsteps
    cdef _LStep* lsteps  # the leaves' programs
    cdef int* lentries  # and their steps' rules (the same numbering; 4 bytes: a dozen rules a line)
    cdef _LOut* louts  # and what fails there
    cdef unsigned char* unknown  # codes 3 (not known), as many as the largest group's atoms
    cdef Py_ssize_t nlsteps
    cdef int n
    cdef int most  # rules in the largest leaf (outcomes a leaf program records at most)
    cdef list atoms  # per node: an atom's linked _Node, None for and/or/not
    cdef tuple groups  # _Group (the first ``paths``), then _Pair
    cdef int paths
    cdef _Spares spare  # _Flat for the next requests
    # While linking: node numbers by id of the IR node, each node's kind and children, the
    # IR of the atoms, and the clauses' nodes.
    cdef dict numbers
    cdef list kinds, kids, atom_ir, leaves
    cdef set clauses

    def __cinit__(self):
        self.atoms, self.kinds, self.kids, self.atom_ir, self.leaves = [], [], [], [], []
        self.spare = _Spares.__new__(_Spares)
        self.numbers = {}
        self.clauses = set()
        self.groups = ()

    def __dealloc__(self):
        free(self.nodes)
        free(self.steps)
        free(self.parents)
        free(self.lsteps)
        free(self.lentries)
        free(self.louts)
        free(self.unknown)

    cdef int clause(self, tuple node, dict memo) except -1:
        """The number of a rule's clause ``node`` (see add)."""
        cdef int n = self.add(node, memo)
        self.clauses.add(n)
        return n

    cdef int add(self, tuple node, dict memo) except -1:
        """The number of ``node`` (a clause, or a node below one), numbering it and the
        nodes below it when first met."""
        cdef object key = id(node)
        cdef object found = self.numbers.get(key)
        if found is not None:
            return found
        cdef tuple inner = _atoms.logic(node)
        cdef list kids
        cdef int n
        if inner is not None:
            kids = [self.add(k, memo) for k in ((inner[1],) if inner[0] == ir.NOT else inner[1])]
            n = len(self.kinds)
            self.kinds.append(inner[0])
            self.kids.append(kids)
            self.atoms.append(None)
            self.atom_ir.append(None)
        else:
            n = len(self.kinds)
            self.kinds.append(None)
            self.kids.append([])
            self.atoms.append(_link(node, memo))
            self.atom_ir.append(node)
        self.numbers[key] = n
        return n

    cdef void finish(self, dict memo, bint leaves) except *:
        """Group the atoms by request path, compile the trees to branch programs and lay
        them out in C; ``leaves``: and the leaves' programs (run() decides on the skeleton)."""
        cdef _Group g
        cdef _Pair p
        cdef list numbered = [i for i, a in enumerate(self.atom_ir) if a is not None]
        cdef list groups = [], paths = []
        self.n = len(self.kinds)
        self.nodes = <_BNode*>malloc((self.n + 1) * sizeof(_BNode))
        if self.nodes == NULL:
            raise MemoryError()
        for i in range(self.n):
            self.nodes[i].atom = NULL if self.kinds[i] is not None else <PyObject*>self.atoms[i]
            self.nodes[i].group = -1
            self.nodes[i].place = 0 if self.kinds[i] is None else -1
        for path, members in _atoms.path_groups([self.atom_ir[i] for i in numbered]):
            g = _Group.__new__(_Group)
            g.path = _link(path, memo)
            texts = (path[2] if path[0] == ir.CACHED else path)[3]
            g.path_text = texts[len(texts) - 1]  # (no wraparound in this module)
            self.keep(g, members, numbered, len(groups))
            groups.append(g)
            paths.append(path)
        self.paths = len(groups)
        # Atoms of two of those paths: kept per pair of their rows (the ungrouped only).
        cdef list rest = [i for i in numbered if self.nodes[i].group < 0]
        for first, second, members in _atoms.pair_groups([self.atom_ir[i] for i in rest], paths):
            p = _Pair.__new__(_Pair)
            p.first, p.second = first, second
            p.size = 64
            p.cells = <_PairCell*>calloc(p.size, sizeof(_PairCell))
            if p.cells == NULL:
                raise MemoryError()
            self.keep(p, members, rest, len(groups))
            groups.append(p)
        self.groups = tuple(groups)
        cdef Py_ssize_t largest = max(1, min(self.n, _L_MOST + 1))  # (a leaf step's node: see ungroup)
        for item in groups:
            largest = max(largest, len((<_Kept>item).atoms))
        self.unknown = <unsigned char*>malloc(largest)
        if self.unknown == NULL:
            raise MemoryError()
        memset(self.unknown, 3, largest)
        cdef dict numbers = {}  # id(_Entry) ⇒ its number
        cdef list entries = [], leaf_entries = []
        cdef _Entry entry
        cdef _Leaf leaf
        if leaves:
            for leaf in self.leaves:
                mine = []
                for i in range(leaf.count):
                    entry = <_Entry>leaf.entries[i]
                    number = numbers.get(id(entry))
                    if number is None:
                        number = numbers[id(entry)] = len(entries)
                        entries.append((entry.ft, entry.fw, entry.fu, entry.rule.forbid))
                    mine.append(number)
                leaf_entries.append(mine)
                self.most = max(self.most, leaf.count)
            starts, steps, leaf_starts, lsteps = _branches.leaf_programs(self.kinds, self.kids, entries, leaf_entries)
            lsteps, far = _branches.relative_steps(lsteps, leaf_starts, _LEAF_REACH)
            leaf_starts = [_NO_PROGRAM if start in far else start for start in leaf_starts]
        else:
            starts, steps = _branches.programs(self.kinds, self.kids, self.clauses)
            leaf_starts, lsteps = [], []
        self.steps = <_Step*>malloc((len(steps) + 1) * sizeof(_Step))
        self.parents = <signed char*>malloc(len(steps) + 1)
        self.nsteps = len(steps)
        self.lsteps = <_LStep*>malloc((len(lsteps) + 1) * sizeof(_LStep))
        self.lentries = <int*>malloc((len(lsteps) + 1) * sizeof(int))
        self.louts = <_LOut*>malloc((len(lsteps) + 1) * sizeof(_LOut))
        self.nlsteps = len(lsteps)
        if (self.steps == NULL or self.parents == NULL or self.lsteps == NULL or self.lentries == NULL
                or self.louts == NULL):
            raise MemoryError()
        for n, start in starts.items():
            self.nodes[<int>n].place = start
        for i, (node, on_true, on_false, parent) in enumerate(steps):
            self.steps[i].node, self.steps[i].on_true, self.steps[i].on_false = node, on_true, on_false
            self.place_code(node, &self.steps[i].group, &self.steps[i].member)
            self.parents[i] = _B_NOT if parent == ir.NOT else _B_OR if parent == ir.OR else _B_AND
        cdef _LStep* ls = self.lsteps
        cdef _LOut* lo = self.louts
        cdef int lnode
        for step in lsteps:
            lnode = step[0]
            lo.node, ls.next[1], ls.next[0] = lnode, step[1], step[2]
            if lnode < 0:
                ls.group, ls.member = _L_TRUE, 0
            else:
                self.place_code(lnode, &ls.group, &ls.member)
            parent = step[3]
            lo.parent = -1 if parent is None else _B_NOT if parent == ir.NOT else _B_OR if parent == ir.OR else _B_AND
            self.lentries[ls - self.lsteps] = step[4]
            lo.last, lo.clause, lo.fail = step[5], step[6], step[7]
            ls += 1
            lo += 1
        for leaf, start in zip(self.leaves, leaf_starts):
            leaf.start = start
        self.numbers = self.kinds = self.kids = self.atom_ir = self.clauses = self.leaves = None  # (the IR is not kept)

    cdef void keep(self, _Kept kept, list members, list numbered, int number) except *:
        """Make ``kept`` (the skeleton's group ``number``) keep the atoms ``numbered[m]`` of
        ``members``."""
        kept.atoms = tuple(self.atoms[numbered[m]] for m in members)
        kept.capacity = max(64, _GROUP_CELLS // len(members))
        kept.nodes = <int*>malloc(len(members) * sizeof(int))
        kept.seen = <unsigned long long*>calloc(_SEEN_WORDS, sizeof(unsigned long long))
        if kept.nodes == NULL or kept.seen == NULL:
            raise MemoryError()
        for j, m in enumerate(members):
            kept.nodes[j] = numbered[m]
            self.nodes[<int>numbered[m]].group, self.nodes[<int>numbered[m]].place = number, j

    cdef void place_code(self, int node, unsigned short* group, unsigned short* member) noexcept:
        """Where a step reads node ``node``'s code first (``lcodes[group][member]``): its path
        group's place; a node of no group at its number in _Flat.val; past 16 bits, the
        skeleton's unknown codes (value() then reads it)."""
        cdef int g = self.nodes[node].group, place = self.nodes[node].place
        if 0 <= g <= _L_MOST - _L_GROUPS and place <= _L_MOST:
            group[0], member[0] = g + _L_GROUPS, place
        elif g < 0 and node <= _L_MOST:
            group[0], member[0] = _L_VAL, node
        else:
            group[0], member[0] = _L_NONE, 0

    cdef inline _Flat take(self):
        cdef object kept = self.spare.take()
        cdef _Flat f
        if kept is None:
            f = _new_flat(self.n, len(self.groups), self.unknown)
            f.outs = <int*>malloc((2 * self.most + 2) * sizeof(int))
            if f.outs == NULL:
                raise MemoryError()
        else:
            f = <_Flat>kept
        return f

    cdef inline void give_back(self, _Flat f):
        f.release()
        self.spare.give(f)

    cdef PyObject* group_values(self, int g, _Context ctx, _Flat f) except NULL:
        """Group ``g``'s _Row for the request, borrowed (None: its atoms are evaluated), found
        once per request; its codes in ``f.codes[g]``, read by value()."""
        cdef PyObject* row = f.groups[g]
        if row != NULL:
            return row
        cdef _Kept group = <_Kept>PyTuple_GET_ITEM(self.groups, g)
        cdef _Pair pair
        if g < self.paths:
            row = (<_Group>group).row(ctx)
        else:
            pair = <_Pair>group
            row = pair.row(self.group_values(pair.first, ctx, f), self.group_values(pair.second, ctx, f))
        if row == Py_None and group.off:
            self.ungroup(g)
        f.groups[g] = row
        f.read[f.nread] = g
        f.nread += 1
        if row != Py_None:
            f.codes[g] = (<_Row>row).codes
        return row

    cdef void ungroup(self, int g) noexcept:
        """Group ``g`` is turned off: its atoms, and those of the pairs of a path group's,
        are evaluated as they are from now on, without asking for its row first. (A request
        under way on another thread reads the atoms either way: the same values.)"""
        cdef _Kept group = <_Kept>PyTuple_GET_ITEM(self.groups, g)
        cdef _Pair pair
        cdef Py_ssize_t j, k
        for j in range(len(group.atoms)):
            self.nodes[group.nodes[j]].group = -1
        if g < self.paths:
            for k in range(self.paths, len(self.groups)):
                pair = <_Pair>PyTuple_GET_ITEM(self.groups, k)
                if pair.first == g or pair.second == g:
                    pair.off = True
                    for j in range(len(pair.atoms)):
                        self.nodes[pair.nodes[j]].group = -1
        # The steps of those atoms read no group either (leaf() and run() would ask for the
        # row first): they read the node's value, as a node of no group (_L_VAL at its
        # number; _L_NONE past 16 bits).
        for k in range(self.nlsteps):
            self.unplace(&self.lsteps[k].group, &self.lsteps[k].member, self.louts[k].node)
        for k in range(self.nsteps):
            self.unplace(&self.steps[k].group, &self.steps[k].member, self.steps[k].node)

    cdef inline void unplace(self, unsigned short* group, unsigned short* member, int node) noexcept:
        """A step's place of node ``node`` read as a node of no group when its group is
        turned off. Written ``group`` _L_NONE, ``member``, then ``group``: a step read
        meanwhile on another thread reads its group's codes, 3s (``unknown`` covers every
        place and every node number of 16 bits), or _Flat.val at its node."""
        if group[0] >= _L_GROUPS and self.nodes[node].group < 0:
            group[0] = _L_NONE
            if node <= _L_MOST:
                member[0] = node
                group[0] = _L_VAL

    cdef int atom(self, int n, _Context ctx, _Flat f) except -1:
        """Atom ``n``'s value (as ev): from its group's row, else evaluated."""
        cdef _BNode* b = &self.nodes[n]
        cdef object v
        cdef PyObject* row
        if b.group >= 0:
            row = self.group_values(b.group, ctx, f)
            if row != Py_None and (<_Row>row).codes[b.place] < 2:
                return (<_Row>row).codes[b.place]
            if row != Py_None:
                v = (<_Kept>PyTuple_GET_ITEM(self.groups, b.group)).value(<_Row>row, b.place, ctx)
            else:
                v = (<_Node>b.atom).ev(ctx)
        else:
            v = (<_Node>b.atom).ev(ctx)
        if v is True:
            f.valued(n, 1)
            return 1
        if v is False:
            f.valued(n, 0)
            return 0
        f.keep(n, v)
        f.valued(n, 2)
        return 2

    cdef inline int value(self, int k, _Context ctx, _Flat f) except -1:
        """Node ``k``'s value (0 false, 1 true, 2 other, in ``f.obj[k]``): a boolean of its
        group's row, else kept, else an atom's, else its program's."""
        cdef const _BNode* b = &self.nodes[k]
        cdef unsigned char c
        if b.group >= 0:
            c = f.codes[b.group][b.place]
            if c < 2:
                return c
        if f.val[k] != 3:
            return f.val[k]
        if b.atom != NULL:
            return self.atom(k, ctx, f)
        return self.run(k, ctx, f)

    cdef void other(self, int n, int k, int b_kind, _Flat f) except *:
        """Node ``n``'s program stopped at node ``k``'s "other" value: its error, or that it
        is not a boolean in the words of the operator above it (``b_kind``; _Logic's, _Not's)."""
        cdef object v = <object>f.obj[k]
        if type(v) is not _Err:
            if b_kind == _B_NOT:
                v = _lazy(not_boolean, ("not", v))
            else:
                v = _lazy(not_boolean, ("or" if b_kind == _B_OR else "and", v, True))
        f.keep(n, v)

    cdef int run(self, int n, _Context ctx, _Flat f) except -1:
        """The value of and/or/not node ``n``: its program from its first step; kept. A
        step's code is read as a leaf step's (see leaf)."""
        cdef const _Step* step
        cdef unsigned char** lcodes = f.lcodes
        cdef int pc = self.nodes[n].place, c
        while True:
            step = &self.steps[pc]
            c = lcodes[step.group][step.member]
            if c > 1:
                if step.group >= _L_GROUPS and f.groups[step.group - _L_GROUPS] == NULL:
                    self.group_values(step.group - _L_GROUPS, ctx, f)
                    c = lcodes[step.group][step.member]
                if c > 1:
                    c = self.value(step.node, ctx, f)
                if c == 2:
                    self.other(n, step.node, self.parents[pc], f)
                    break
            pc = step.on_true if c else step.on_false
            if pc < 0:
                c = pc == _TRUE
                break
        f.valued(n, c)
        return c

    cdef int leaf(self, int pc, _Context ctx, _Flat f) except -1:
        """Run a leaf's program from step ``pc``: its rules' outcomes in ``f.outs``, in the
        leaf's order, as pairs (the rule's place in the leaf, -1 when it applies or the step
        at which it failed: see error); how many. (A rule that applies is written first as
        ``~step`` where it does, with no branch on whether it does: its pair is made after
        the loop. outs holds 2 * most + 2 ints: every rule's pair, and that one write past.)"""
        if pc < 0:
            return 0
        cdef const _LStep* steps = self.lsteps
        cdef const _LStep* step
        cdef const _LOut* out
        cdef unsigned char** lcodes = f.lcodes
        cdef int c, t, n0, n1, e, i, m
        cdef int* outs = f.outs
        cdef int* o = outs
        while True:
            step = &steps[pc]
            n0, n1 = step.next[0], step.next[1]
            c = lcodes[step.group][step.member]  # (value()'s first test, on the step's copy)
            if c > 1:
                if step.group >= _L_GROUPS and f.groups[step.group - _L_GROUPS] == NULL:
                    # The group's first read in this request: its row, then the code again
                    # (value() would read the node and its value first, to the same end).
                    self.group_values(step.group - _L_GROUPS, ctx, f)
                    c = lcodes[step.group][step.member]
                if c > 1:  # (not _L_TRUE: its code is 1; _L_VAL's place is its node)
                    c = self.value(step.member if step.group == _L_VAL else self.louts[pc].node, ctx, f)
            if c < 2:
                t = _pick(c, n0, n1)
                o[0] = ~pc
                o += (t & 1) << 1
            else:
                out = &self.louts[pc]
                for e in range(self.lentries[pc], out.last + 1):
                    o[0] = e
                    o[1] = pc
                    o += 2
                t = out.fail
            t >>= 1
            if t == 0:  # (the leaf is done)
                break
            pc += t
        m = <int>(o - outs)
        for i in range(0, m, 2):
            if outs[i] < 0:
                outs[i + 1] = -1
                outs[i] = self.lentries[~outs[i]]
        return m >> 1

    cdef object error(self, int pc, _Flat f):
        """The error of a rule that failed at leaf step ``pc`` (as _condition): the value's,
        or that it is not a boolean in the words of the clause (the node is the clause) or of
        the operator above it (_Logic's, _Not's)."""
        cdef const _LOut* out = &self.louts[pc]
        cdef object v = <object>f.obj[out.node]
        if type(v) is _Err:
            return v
        if out.parent < 0:
            return _Err(<str>_CLAUSES[out.clause] + " expects a boolean, got " + type_name(v))
        if out.parent == _B_NOT:
            return _lazy(not_boolean, ("not", v))
        return _lazy(not_boolean, ("or" if out.parent == _B_OR else "and", v, True))


@cython.no_gc
cdef class _Limit:
    """A limit rule (SPEC §9): when it applies (``entry``, whose rule is None) and its keys."""
    cdef Py_ssize_t index
    cdef _Entry entry
    cdef tuple keys  # _Nodes


@cython.no_gc
cdef class _Leaf:
    cdef Py_ssize_t count
    # ``count`` owned references to _Entrys, from the link arena right after the leaf (one
    # cache line more, not a tuple elsewhere), then as many borrowed references to their
    # rules' static reasons (NULL: a reason with parts, made per request): a rule that
    # applies costs _phase one read, not three objects'; NULL when the leaf has no rules.
    cdef PyObject** entries
    cdef int start  # the first step of its rules' program in the _Skeleton (-1: none)

    def __dealloc__(self):
        _release_owned(self.entries, self.count)


@cython.no_gc
cdef class _Switch:
    cdef _Node path
    cdef dict branches  # str ⇒ subtree (a _Switch or a _Leaf)
    cdef object default
    cdef object error
    # ``branches`` as an open-addressing C table of mask + 1 places (a power of two, at most
    # half full), from the link arena right after the switch: a request's walk down the tree
    # reads each switch, its table and the key compared, not a dict object and its keys
    # object elsewhere in memory (the library's tree is four switches deep, both trees).
    # NULL when a key is not an exact str (then ``branches`` is read as a dict).
    cdef _Branch* table
    cdef size_t mask

    def __dealloc__(self):
        if self.table != NULL:
            pdp_arena_release(self.table)

    cdef int lay_out(self) except -1:
        """Make ``table`` from ``branches`` (called right after the switch is made)."""
        for key in self.branches:
            if type(key) is not str:
                return 0
        self.table = _new_branches(len(self.branches), &self.mask)
        for key, tree in self.branches.items():
            _put_branch(self.table, self.mask, key, tree)
        return 0

    cdef inline object branch(self, str value):
        """``branches.get(value, default)``."""
        if self.table == NULL:
            return _get(self.branches, value, self.default)
        cdef PyObject* tree = _find_branch(self.table, self.mask, value)
        return self.default if tree == NULL else <object>tree


@cython.no_gc
cdef class _Both:
    """The forbid and the permit subtrees (a _Leaf or a _Switch; None where a tree has no
    error branch) of one value of the path on which both trees switch first: one look-up in
    one dict finds the two (Evaluator.both), linked just before the forbid leaf it leads to."""
    cdef object forbid, permit


pdp_use_arena((_Node, _Const, _Error, _Path, _Path1, _Path2, _Now, _Attr, _Index, _IndexKey, _List, _Not, _Logic, _Compare, _EqStr,
               _InStrs, _InCidr, _MatchGlob, _Call, _Duration, _Time, _Defined, _Cached, _Lookup, _Rule, _Entry, _Limit, _Leaf,
               _Switch, _Both))


cdef object _rendered(object value):
    """values.render of an integer, a boolean or a list of strings that JSON writes as they
    are (no quote, backslash or control character), in C; None for anything else."""
    cdef list items
    cdef Py_ssize_t i
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is not list:
        return None
    items = <list>value
    for item in items:
        if type(item) is not str:
            return None
        for i in range(len(<str>item)):
            if _at(<str>item, i) < 0x20 or _at(<str>item, i) == u'"' or _at(<str>item, i) == u'\\':
                return None
    if not items:
        return "[]"
    return '["' + '","'.join(items) + '"]'


cdef extern from "Python.h":
    str _unew "PyUnicode_New"(Py_ssize_t size, Py_UCS4 maxchar)
    Py_UCS4 _umax "PyUnicode_MAX_CHAR_VALUE"(object s)
    Py_ssize_t _ulen "PyUnicode_GET_LENGTH"(object s)
    Py_ssize_t _ucopy "PyUnicode_CopyCharacters"(object to, Py_ssize_t at, object source, Py_ssize_t start,
                                                 Py_ssize_t count) except -1
    object _tuple_new "PyTuple_New"(Py_ssize_t size)

from libc.string cimport memcpy


cdef str _concat(tuple parts, Py_ssize_t count, Py_ssize_t length):
    """The first ``count`` strings of ``parts`` (``length`` characters together) joined:
    ``"".join`` without its checks and its list."""
    cdef Py_ssize_t i, at = 0, n
    cdef Py_UCS4 maxchar = 0
    cdef object part
    cdef int kind
    if count == 1:
        return <str>PyTuple_GET_ITEM(parts, 0)
    for i in range(count):
        maxchar = max(maxchar, _umax(<object>PyTuple_GET_ITEM(parts, i)))
    cdef str out = _unew(length, maxchar)
    kind = _ukind(out)
    for i in range(count):
        part = <object>PyTuple_GET_ITEM(parts, i)
        n = _ulen(part)
        if _ukind(part) == kind:
            memcpy(<char*>_udata(out) + at * kind, _udata(part), n * kind)
        else:
            _ucopy(out, at, part, 0, n)
        at += n
    return out


cdef inline object _condition(object value, str clause):
    if value is True or value is False or type(value) is _Err:
        return value
    return _Err(clause + " expects a boolean, got " + type_name(value))


cdef tuple _CLAUSES = ("target", "when", "unless")


cdef inline object _applies(_Entry entry, _Context ctx):
    """True, False, or the _Err that stopped it."""
    cdef object value
    if entry.target is not None:
        value = _condition(entry.target.ev(ctx), "target")
        if value is not True:
            return value
    if entry.when is not None:
        value = _condition(entry.when.ev(ctx), "when")
        if value is not True:
            return value
    if entry.unless is not None:
        value = _condition(entry.unless.ev(ctx), "unless")
        if value is True:
            return False
        if value is not False:
            return value
    return True


# ---- request validation ------------------------------------------------------------------
#
# Every request passes here, so the check walks it in C on borrowed pointers: exact type
# compares, no reference counting, no Python objects made but the result. It may only be
# stricter than request.parse_request: "no" (False / None) means "not sure", and the reference
# then normalizes the request or raises RequestError with the path. Only exact built-in types
# are looked into, so no Python code runs during the walk and the borrowed pointers stay valid.

from cpython.object cimport PyObject, PyTypeObject, Py_LE
from libc.string cimport memcmp

cdef extern from "Python.h":
    PyTypeObject PyUnicode_Type, PyBool_Type, PyLong_Type, PyFloat_Type, PyDict_Type, PyList_Type
    # Declared on PyObject* so that Cython adds no reference counting; most are macros.
    PyTypeObject* _type "Py_TYPE"(PyObject* o)
    Py_ssize_t _dict_size "PyDict_GET_SIZE"(PyObject* d)
    Py_ssize_t _list_size "PyList_GET_SIZE"(PyObject* l)
    PyObject* _list_item "PyList_GET_ITEM"(PyObject* l, Py_ssize_t i)
    Py_ssize_t _str_len "PyUnicode_GET_LENGTH"(PyObject* s)
    int _str_kind "PyUnicode_KIND"(PyObject* s)
    void* _str_data "PyUnicode_DATA"(PyObject* s)
    Py_UCS4 _max_char "PyUnicode_MAX_CHAR_VALUE"(PyObject* s)
    double _float_value "PyFloat_AS_DOUBLE"(PyObject* f)
    long long _as_long_long "PyLong_AsLongLongAndOverflow"(PyObject* o, int* overflow)  # no error on an int
    int _compare "PyObject_RichCompareBool"(PyObject* a, PyObject* b, int op)

cdef extern from *:
    """
    /* 1 when the str s holds no lone surrogate (U+D800..U+DFFF); 0 also when unsure. */
    static int pdp_no_surrogate(PyObject *s) {
    #if PY_VERSION_HEX < 0x030C0000
        if (!PyUnicode_IS_READY(s)) return 0;  /* a legacy string: the reference will tell */
    #endif
        int kind = PyUnicode_KIND(s);
        const void *data = PyUnicode_DATA(s);
        Py_ssize_t n = PyUnicode_GET_LENGTH(s);
        if (kind == PyUnicode_1BYTE_KIND) return 1;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c >= 0xD800 && c <= 0xDFFF) return 0;
        }
        return 1;
    }

    /* An int of at most one digit (|v| < 2**30): within 64 bits, known without a call. */
    #if PY_VERSION_HEX >= 0x030C0000
    #define pdp_small_int(o) PyUnstable_Long_IsCompact((PyLongObject *)(o))
    #else
    #define pdp_small_int(o) (-1 <= Py_SIZE(o) && Py_SIZE(o) <= 1)
    #endif

    """
    bint pdp_no_surrogate(PyObject* s) noexcept
    bint pdp_small_int(PyObject* o) noexcept


cdef Py_ssize_t _MAX_VALUES = MAX_VALUES
cdef Py_ssize_t _MAX_LIST_ITEMS = MAX_LIST_ITEMS
cdef int _MAX_DEPTH = MAX_DEPTH
# The names of request.py as C pointers (its tuples keep them alive): ROOT_KEYS in order, and
# each root's REQUIRED fields (NULL: none). Its literals are interned, as are the keys of
# requests written in Python, so most keys are these very objects.
cdef PyObject* _ROOT_NAMES[4]
cdef PyObject* _REQUIRED_NAMES[4][2]


cdef int _name_roots() except -1:
    cdef int i, j
    assert len(ROOT_KEYS) == 4
    for i in range(4):
        _ROOT_NAMES[i] = <PyObject*>ROOT_KEYS[i]
        _REQUIRED_NAMES[i][0] = _REQUIRED_NAMES[i][1] = NULL
    for root, field in REQUIRED:
        i = ROOT_KEYS.index(root)
        j = 0 if _REQUIRED_NAMES[i][0] == NULL else 1
        assert _REQUIRED_NAMES[i][j] == NULL, "at most two required fields a root"
        _REQUIRED_NAMES[i][j] = <PyObject*>field
    return 0


_name_roots()


cdef inline bint _clean(PyObject* s) noexcept:
    """No lone surrogate (request.py rejects them: no layer could encode them). Strings all
    below U+D800 (ASCII, Latin, most of the BMP) need no scan."""
    return _max_char(s) < 0xD800 or pdp_no_surrogate(s)


cdef bint _plain_number(PyObject* v, PyTypeObject* t) noexcept:
    """An int within INT_MIN..INT_MAX, a bool or a finite float."""
    cdef int overflow
    if t == &PyLong_Type:
        if pdp_small_int(v):
            return True
        _as_long_long(v, &overflow)
        # Within int64 in C; above it (up to 2**64-1 is allowed) the rare compare of Python ints.
        return overflow == 0 or (overflow > 0 and _compare(v, <PyObject*>_INT_MAX, Py_LE) == 1)
    if t == &PyBool_Type:
        return True
    if t == &PyFloat_Type:
        return isfinite(_float_value(v))
    return False  # None, tuples (copied to lists), subclasses (copied or unsure), non-JSON values


cdef inline bint _plain(PyObject* v, int depth, Py_ssize_t* left) noexcept:
    """True when ``v`` (at ``depth``) is already a normalized JSON value, nothing to copy, within
    the request limits; ``left``: values the request may still carry (request.MAX_VALUES).
    Strings, the most common values, are checked here; containers by a call."""
    cdef PyTypeObject* t = _type(v)
    if t == &PyUnicode_Type:
        return _clean(v)
    if t == &PyDict_Type:
        return _plain_map(v, depth, left)
    if t == &PyList_Type:
        return _plain_list(v, depth, left)
    return _plain_number(v, t)


cdef inline bint _plain_entry(PyObject* key, PyObject* value, int depth, Py_ssize_t* left) noexcept:
    # A null value is not plain: request.py drops it (a change).
    return _type(key) == &PyUnicode_Type and _clean(key) and _plain(value, depth, left)


cdef bint _plain_map(PyObject* d, int depth, Py_ssize_t* left) noexcept:
    cdef Py_ssize_t pos = 0, n = _dict_size(d)
    cdef PyObject* key
    cdef PyObject* value
    left[0] -= n
    if depth >= _MAX_DEPTH or left[0] < 0:
        return False
    while n:  # n items, no end call (nothing can change the map during the walk)
        n -= 1
        if not _next(d, &pos, &key, &value) or not _plain_entry(key, value, depth + 1, left):
            return False
    return True


cdef bint _plain_list(PyObject* l, int depth, Py_ssize_t* left) noexcept:
    cdef Py_ssize_t i, n = _list_size(l)
    left[0] -= n
    if depth >= _MAX_DEPTH or n > _MAX_LIST_ITEMS or left[0] < 0:
        return False
    for i in range(n):
        if not _plain(_list_item(l, i), depth + 1, left):  # a null item: refused by request.py
            return False
    return True


cdef inline bint _same_text(PyObject* a, PyObject* b) noexcept:
    """``a == b`` for two ready exact strs (dict keys and names: hashed, so ready)."""
    cdef Py_ssize_t n = _str_len(a)
    return (n == _str_len(b) and _str_kind(a) == _str_kind(b)
            and memcmp(_str_data(a), _str_data(b), n * _str_kind(a)) == 0)


cdef inline bint _is(PyObject* key, PyObject* name) noexcept:
    """``key == name`` for a str key; ``name`` NULL: no name."""
    return key == name or (name != NULL and _same_text(key, name))


cdef inline int _root_slot(PyObject* key) noexcept:
    """The index of the str ``key`` in ROOT_KEYS, or -1: the interned names first."""
    cdef int i
    for i in range(4):
        if key == _ROOT_NAMES[i]:
            return i
    for i in range(4):
        if _same_text(key, _ROOT_NAMES[i]):
            return i
    return -1


cdef int _plain_roots(object raw, PyObject** out) except -1:
    """1 when ``raw`` is a request already valid and normal (no copy), its four roots then in
    ``out`` (ROOT_KEYS order) as new references; 0 otherwise (``out`` left as it was)."""
    cdef PyObject* roots[4]  # identity, action, resource, context (ROOT_KEYS); NULL: absent
    cdef PyObject* key
    cdef PyObject* value
    cdef PyObject* root
    cdef PyObject** required
    cdef Py_ssize_t raw_pos = 0, raw_n, pos, n, left = _MAX_VALUES
    cdef int r, wanted
    cdef object action
    if _type(<PyObject*>raw) != &PyDict_Type:
        return 0
    roots[0] = roots[1] = roots[2] = roots[3] = NULL
    raw_n = _dict_size(<PyObject*>raw)
    while raw_n:
        raw_n -= 1
        if not _next(<PyObject*>raw, &raw_pos, &key, &root) or _type(key) != &PyUnicode_Type:
            return 0
        r = _root_slot(key)
        if r < 0:
            return 0  # an unknown key
        if r == 1 and _type(root) == &PyUnicode_Type:
            # A bare action string: checked as the map {"name": action} it stands for.
            action = {"name": <object>root}
            root = <PyObject*>action
        # A null root (absent for request.py, and context then {}) is left to it.
        if _type(root) != &PyDict_Type:
            return 0
        roots[r] = root
        # The root map: plain at depth 0, holding non-empty strings at its required fields
        # (found on the walk: no lookups).
        n = _dict_size(root)
        left -= n
        if left < 0:
            return 0
        required = _REQUIRED_NAMES[r]
        wanted = (required[0] != NULL) + (required[1] != NULL)
        pos = 0
        while n:
            n -= 1
            if not _next(root, &pos, &key, &value) or not _plain_entry(key, value, 1, &left):
                return 0
            if (wanted and _type(value) == &PyUnicode_Type and _str_len(value) > 0
                    and (_is(key, required[0]) or _is(key, required[1]))):
                wanted -= 1
        if wanted:
            return 0
    if roots[0] == NULL or roots[1] == NULL or roots[2] == NULL:
        return 0  # a missing root
    cdef object context = {} if roots[3] == NULL else <object>roots[3]
    out[0], out[1], out[2], out[3] = roots[0], roots[1], roots[2], <PyObject*>context
    _incref(out[0])
    _incref(out[1])
    _incref(out[2])
    _incref(out[3])
    return 1


cdef tuple _plain_request(object raw):
    """The four roots of a request that is already valid and normal (no copy), else None."""
    cdef PyObject* roots[4]
    if not _plain_roots(raw, roots):
        return None
    cdef tuple t = _tuple_new(4)
    cdef PyObject** items = _tuple_items(<PyObject*>t)
    items[0], items[1], items[2], items[3] = roots[0], roots[1], roots[2], roots[3]  # (stolen)
    return t


cdef tuple _roots(object request):
    attrs = request.attrs
    return (attrs["identity"], attrs["action"], attrs["resource"], attrs["context"])


cdef list _validated_batch(object requests, double arrival):
    """Each request's roots, validated before any is decided (a RequestError names the index);
    an internal error stands in its place, to fail that request closed when it is decided."""
    cdef list batch = []
    cdef object roots
    cdef Py_ssize_t i = 0
    for raw in requests:
        try:
            roots = _plain_request(raw)
            if roots is None:
                roots = _roots(indexed_request(i, raw, arrival))
        except RequestError:
            raise
        except Exception as exc:
            roots = exc
        batch.append(roots)
        i += 1
    return batch


cdef object _failed_reason(_Rule rule, str message, _Context ctx):
    """A rule that could not be evaluated: its RuleError added to ctx.errors; its fail-closed
    reason for a forbid, None for a permit (it does not apply)."""
    if ctx.errors is None:
        ctx.errors = []
    ctx.errors.append(_rule_error(rule.id, message))
    if not rule.forbid:
        return None
    return _reason_of(rule.id, "forbid", FAILED_CLOSED + message, rule.annotations)


cdef class Evaluator:
    """Decides requests with one compiled Program."""

    cdef readonly object program
    cdef readonly str revision
    cdef list rules
    cdef list limits
    cdef object forbid_tree, permit_tree
    # Where both trees switch first on the same path (a policy per resource type): that
    # switch once, to a _Both per value (default and error too); else None.
    cdef _Switch both
    cdef Py_ssize_t slots
    cdef _Spares spare  # _Slots for the next requests
    cdef _Context kept  # a context for the next decide (None: in use, or none yet)
    cdef _Skeleton skeleton  # the rules' clauses, for run()
    cdef readonly bint flat  # run() evaluates on the skeleton (leaves of many rules), else node by node
    cdef bint bounded  # a clock bound of max_skew seconds (pdp.clock)
    cdef double max_skew

    backend = "compiled"

    def __cinit__(self):
        # Linked by __init__; until then (Evaluator.__new__ alone) a decision finds no rule.
        self.rules = []
        self.spare = _Spares.__new__(_Spares)
        self.limits = []
        self.forbid_tree = self.permit_tree = _Leaf.__new__(_Leaf)
        self.skeleton = _Skeleton.__new__(_Skeleton)
        self.revision = ""

    @property
    def max_clock_skew(self):
        """The clock bound in seconds (pdp.clock), or None: context.time is taken as given."""
        return self.max_skew if self.bounded else None

    def __init__(self, program, max_clock_skew=None):
        verify(program)  # PolicyError unless well-formed: linking below trusts every field
        self.bounded = max_clock_skew is not None
        self.max_skew = clock.check_max_skew(max_clock_skew) if self.bounded else 0.0
        cdef dict memo = {}
        self.program = program
        self.revision = program.revision
        self.slots = program.slots
        self.rules = []
        cdef _Rule r
        for code in program.rules:
            r = _Rule.__new__(_Rule)
            r.id, r.forbid = code.id, code.effect == "forbid"
            r.annotations = frozen_map(code.annotations)  # shared by its reasons: read-only
            r.reason = None
            message = ""
            if code.reason is not None:
                if all(isinstance(p, str) for p in code.reason):
                    message = cap_reason("".join(code.reason))
                else:
                    r.reason = tuple([p if isinstance(p, str) else _link(p, memo) for p in code.reason])
            r.static_reason = Reason(code.id, code.effect, message, r.annotations)
            self.rules.append(r)
        cdef dict linked = {}  # id(entry or leaf code) ⇒ its object: shared code is linked once
        self.skeleton = _Skeleton.__new__(_Skeleton)
        cdef dict both = {}
        self._link_leaves(program.forbid_tree, program.permit_tree, memo, linked, both)
        self.forbid_tree = self._tree(program.forbid_tree, memo, linked)
        self.permit_tree = self._tree(program.permit_tree, memo, linked)
        self.both = self._both(both) if both else None
        # The skeleton pays where a request meets many rules (untargeted ones); on leaves of a
        # few rules its per-request set-up costs more than it saves (callgrind: +12% at 10).
        self.flat = self._largest_leaf(self.forbid_tree) + self._largest_leaf(self.permit_tree) >= _FLAT_FROM
        self.skeleton.finish(memo, self.flat)
        cdef _Limit limit
        self.limits = []
        for i, code in enumerate(program.limits):
            limit = _Limit.__new__(_Limit)
            limit.index = i
            limit.entry = _Entry.__new__(_Entry)
            limit.entry.target = None if code.target is None else _link(code.target, memo)
            limit.entry.when = None if code.when is None else _link(code.when, memo)
            limit.entry.unless = None if code.unless is None else _link(code.unless, memo)
            limit.entry.ft = limit.entry.fw = limit.entry.fu = -1  # (limits use _applies)
            limit.keys = tuple(_link(k, memo) for k in code.keys)
            self.limits.append(limit)
        _renumber_slots(memo)

    cdef Py_ssize_t _largest_leaf(self, object tree):
        if type(tree) is _Leaf:
            return (<_Leaf>tree).count
        cdef _Switch s = <_Switch>tree
        cdef Py_ssize_t most = self._largest_leaf(s.default)
        for branch in s.branches.values():
            most = max(most, self._largest_leaf(branch))
        if s.error is not None:
            most = max(most, self._largest_leaf(s.error))
        return most

    cdef void _link_leaves(self, tuple forbids, tuple permits, dict memo, dict linked, dict both):
        """Link the leaves of both trees in the order that keeps a request's together: where
        both trees switch on the same path, the forbid and the permit leaves of each value,
        one after the other (a request of that value reads those two). At the top (``both``
        not None), each value's _Both first, right before its leaves; ``both`` gets them by
        value (finished by _both)."""
        cdef _Both b
        if (forbids[0] == "switch" and permits[0] == "switch" and forbids[1] == permits[1]):
            for key, subtree in forbids[2].items():
                if both is not None:
                    both[key] = _Both.__new__(_Both)
                other = permits[2].get(key)
                if other is not None:
                    self._link_leaves(subtree, other, memo, linked, None)
            if both is not None:
                for key in permits[2]:
                    if key not in both:
                        both[key] = _Both.__new__(_Both)
        self._leaves(forbids, memo, linked)
        self._leaves(permits, memo, linked)

    cdef _Switch _both(self, dict made):
        """The one switch of both trees (see ``both``), from the top switches already linked
        and the _Both objects made for their values by _link_leaves."""
        cdef _Switch f = <_Switch>self.forbid_tree, p = <_Switch>self.permit_tree
        cdef _Switch s = _Switch.__new__(_Switch)
        cdef _Both b
        s.path = f.path
        s.branches = {}
        for key, b in made.items():
            b.forbid = f.branches.get(key, f.default)
            b.permit = p.branches.get(key, p.default)
            s.branches[key] = b
        b = _Both.__new__(_Both)
        b.forbid, b.permit = f.default, p.default
        s.default = b
        if f.error is not None or p.error is not None:
            b = _Both.__new__(_Both)
            b.forbid, b.permit = f.error, p.error
            s.error = b
        s.lay_out()
        return s

    cdef void _leaves(self, tuple tree, dict memo, dict linked):
        """Link every leaf of ``tree`` not linked yet, depth first."""
        if tree[0] == "leaf":
            self._leaf_of(tree, memo, linked)
            return
        for subtree in tree[2].values():
            self._leaves(subtree, memo, linked)
        self._leaves(tree[3], memo, linked)
        if tree[4] is not None:
            self._leaves(tree[4], memo, linked)

    cdef _Leaf _leaf_of(self, tuple tree, dict memo, dict linked):
        """The leaf of ``tree``; its entries right after it, each with the nodes it reads."""
        cdef _Leaf leaf = linked.get(id(tree))
        cdef _Entry entry
        cdef Py_ssize_t n = len(tree[1])
        if leaf is not None:
            return leaf
        leaf = _Leaf.__new__(_Leaf)
        if n:
            leaf.entries = <PyObject**>pdp_arena_raw(2 * n * sizeof(PyObject*))
        for code in tree[1]:
            entry = linked.get(id(code))  # an entry shared by leaves is linked once
            if entry is None:
                rule, target, when, unless = code
                entry = _Entry.__new__(_Entry)
                entry.rule = self.rules[rule]
                entry.target = None if target is None else _link(target, memo)
                entry.when = None if when is None else _link(when, memo)
                entry.unless = None if unless is None else _link(unless, memo)
                entry.ft = -1 if target is None else self.skeleton.clause(target, memo)
                entry.fw = -1 if when is None else self.skeleton.clause(when, memo)
                entry.fu = -1 if unless is None else self.skeleton.clause(unless, memo)
                linked[id(code)] = entry
            Py_INCREF(entry)
            leaf.entries[leaf.count] = <PyObject*>entry
            leaf.entries[n + leaf.count] = NULL if entry.rule.reason is not None else <PyObject*>entry.rule.static_reason
            leaf.count += 1
        leaf.start = -1
        self.skeleton.leaves.append(leaf)
        linked[id(tree)] = leaf
        return leaf

    cdef object _tree(self, tuple tree, dict memo, dict linked):
        cdef _Switch s
        if tree[0] == "leaf":
            return self._leaf_of(tree, memo, linked)
        _, path, branches, default, error = tree
        # The subtrees and the path first: the switch and its table are made last, side by side.
        linked_path = _link(path, memo)
        subtrees = {k: self._tree(v, memo, linked) for k, v in branches.items()}
        default_tree = self._tree(default, memo, linked)
        error_tree = None if error is None else self._tree(error, memo, linked)
        s = _Switch.__new__(_Switch)
        s.path, s.branches, s.default, s.error = linked_path, subtrees, default_tree, error_tree
        s.lay_out()
        return s

    cpdef object decide(self, object raw, object token=None):
        """Decide one request dict; raises RequestError when it is malformed. Any other
        exception (a bug) fails closed: DENY with the reason ``internal_error``. ``token`` is
        the request's verified token (the root ``token``; None: absent)."""
        cdef _Context ctx
        cdef object decision
        try:
            ctx = self._context(raw, token)
            decision = self._run(ctx, -1.0, False)  # arrival: read if needed
            self._done(ctx)
            return decision
        except RequestError:
            raise
        except Exception as exc:
            return failed_closed(exc, self.revision)

    cdef _Context _context(self, object raw, object token):
        """A context holding the request ``raw`` (validated: RequestError when malformed) and
        ``token``: the one kept from the last request (``_done``), else a new one."""
        cdef PyObject* roots[4]
        cdef _Context ctx = self.kept
        if ctx is None:
            ctx = _Context.__new__(_Context)
        else:
            self.kept = None  # (a decision made meanwhile, from another thread, makes its own)
        if _plain_roots(raw, roots):
            ctx.take_roots(roots)
        else:
            # Anything unusual (nulls, tuples, errors): the reference validation, which
            # normalizes or raises RequestError with the path.
            ctx.set_roots(_roots(parse_request(raw, -1.0)))
        ctx.set_token(token)
        return ctx

    cdef inline void _done(self, _Context ctx) noexcept:
        """Keep ``ctx`` (its slots cleared) for the next request, holding none of this one's values."""
        ctx.release_roots()
        ctx.now_value = _UNSET
        ctx.errors = None
        ctx.ip_text = None  # (the address text a cidr test parsed: the request's too)
        self.kept = ctx

    cpdef list decide_many(self, object requests):
        """Validate every request first (RequestError names the index), then decide each; an
        internal error fails that request closed."""
        cdef double arrival = _nanos(CLOCK_REALTIME) / 1e9
        cdef list batch = _validated_batch(requests, arrival)
        cdef list out = []
        cdef object roots
        cdef _Context ctx = _Context.__new__(_Context)  # one for the batch: run() resets it
        for roots in batch:
            try:
                if type(roots) is not tuple:
                    raise roots
                out.append(self.run(ctx, <tuple>roots, arrival))
            except Exception as exc:
                out.append(failed_closed(exc, self.revision))
        return out

    cpdef tuple decide_claims(self, object raw, object token=None):
        """``(decision, claims)``: the claims are the limits an ALLOW meets (as
        ``reference.limit_claims``), None when it is not ALLOW or meets none. ``token`` as
        ``decide``'s."""
        cdef PyObject* claims = NULL
        cdef object decision = self.decide_into(raw, token, &claims)
        if claims == NULL:
            return (decision, None)
        cdef object owned = <object>claims
        Py_XDECREF(claims)  # (owned holds it now)
        return (decision, owned)

    cdef object decide_into(self, object raw, object token, PyObject** claims_out):
        """``decide_claims`` without the pair: the decision, and the claims (a new reference)
        in ``claims_out`` when there are any (left NULL otherwise). The limit wrapper's C entry
        (``claims_capsule``)."""
        cdef _Context ctx
        cdef object decision, claims = None
        try:
            ctx = self._context(raw, token)
            decision = self._run(ctx, -1.0, True)  # the slots kept: the limits read them too
            if self.limits and (<tuple>decision)[0] is _ALLOW:
                claims = self._claims(ctx)
            ctx.clear_slots()
            self._done(ctx)
        except RequestError:
            raise
        except Exception as exc:
            return failed_closed(exc, self.revision)
        if claims is not None:
            Py_INCREF(claims)
            claims_out[0] = <PyObject*>claims
        return decision

    @property
    def claims_capsule(self):
        """``decide_into`` as a C function ``object (object evaluator, object request, PyObject**
        claims)`` in a capsule, for pdp/limits/_memory.pyx: a limited decision without a Python
        call or a (decision, claims) pair."""
        return PyCapsule_New(<void*>_decide_into, _CLAIMS_CAPSULE, NULL)

    cpdef list decide_many_claims(self, object requests, object tokens=None):
        """``decide_claims`` of each request, in order (validated first, as ``decide_many``);
        ``tokens``: the verified token of each request (None: no request has one)."""
        cdef double arrival = _nanos(CLOCK_REALTIME) / 1e9
        cdef list batch = _validated_batch(requests, arrival)
        cdef list out = []
        cdef object roots, decision
        cdef Py_ssize_t i = 0
        cdef _Context ctx = _Context.__new__(_Context)  # one for the batch: run() resets it
        for roots in batch:
            try:
                if type(roots) is not tuple:
                    raise roots
                if tokens is not None:
                    ctx.set_token(tokens[i])
                decision = self.run(ctx, <tuple>roots, arrival, True)  # the slots kept for the limits
                if not self.limits or (<tuple>decision)[0] is not _ALLOW:
                    out.append((decision, None))
                else:
                    out.append((decision, self._claims(ctx)))
                ctx.clear_slots()
            except Exception as exc:
                out.append((failed_closed(exc, self.revision), None))
            i += 1
        return out

    cdef object _claims(self, _Context ctx):
        """The limits met, in order: (index, key values) or (index, message) (fails closed)."""
        cdef list out = None
        cdef list keys
        cdef _Limit limit
        cdef object applies, value
        for item in self.limits:
            limit = <_Limit>item
            applies = _applies(limit.entry, ctx)
            if applies is True:
                keys = []
                for k in limit.keys:
                    value = (<_Node>k).ev(ctx)
                    if type(value) is _Err:
                        applies = value
                        break
                    if type(value) is not str and type(value) is not int and type(value) is not float \
                            and type(value) is not bool:
                        applies = _Err("a limit key must be a string, number or boolean, got " + type_name(value))
                        break
                    keys.append(value)
                else:
                    if out is None:
                        out = []
                    out.append((limit.index, tuple(keys)))
                    continue
            if applies is not False:
                if out is None:
                    out = []
                out.append((limit.index, (<_Err>applies).text()))
        return out

    def decide_parsed(self, dict attrs, double arrival, token=None):
        """Decide a request already validated: the ``attrs`` of ``request.parse_request``."""
        return self.decide_parsed_claims(attrs, arrival, token, False)[0]

    def decide_parsed_claims(self, dict attrs, double arrival, token=None, bint claims=True):
        """``decide_parsed``, and the limits an ALLOW meets, as ``decide_claims``."""
        cdef tuple roots = (attrs["identity"], attrs["action"], attrs["resource"], attrs["context"])
        for root in roots:
            if type(root) is not dict:  # the evaluation reads the roots as dicts unchecked
                raise TypeError("decide_parsed takes the attrs of pdp.request.parse_request")
        if token is not None and type(token) is not dict:
            raise TypeError("a verified token is a dict")
        cdef _Context ctx = _Context.__new__(_Context)
        ctx.set_token(token)
        cdef object decision = self.run(ctx, roots, arrival, True)  # the slots kept for the limits
        if not claims or not self.limits or (<tuple>decision)[0] is not _ALLOW:
            return (decision, None)
        return (decision, self._claims(ctx))

    def path_tables(self):
        """``{path text: values kept}`` of the paths whose atoms are kept per value (None:
        turned off, its values did not repeat): for tests and profiling."""
        cdef _Group g
        out = {}
        for item in self.skeleton.groups[:self.skeleton.paths]:
            g = <_Group>item
            text = g.path_text
            out[text] = None if g.off else g.used
        return out

    def pair_tables(self):
        """``{(path text, path text): pairs of values kept}`` of the atoms kept per value of
        two paths (None: turned off): for tests and profiling."""
        cdef _Pair p
        cdef tuple groups = self.skeleton.groups
        out = {}
        for item in groups[self.skeleton.paths:]:
            p = <_Pair>item
            key = ((<_Group>groups[p.first]).path_text, (<_Group>groups[p.second]).path_text)
            out[key] = None if p.off else p.used
        return out

    cdef inline void _start(self, _Context ctx, double arrival):
        """Set every field of ``ctx`` but the roots and the token (set before) for its request
        (a fresh context, or one reused by a batch, a search or the next ``decide``)."""
        ctx.arrival = arrival
        ctx.bounded, ctx.max_skew = self.bounded, self.max_skew
        ctx.clear_slots()  # a context reused by a batch or a search
        ctx.slots = self.slots
        ctx.spare = self.spare
        ctx.now_kind, ctx.now_value = 0, _UNSET
        ctx.errors = None

    cpdef list allowed_candidates(self, object request, str root, str key, object candidates,
                                  Py_ssize_t limit=-1):
        """The indexes of ``candidates`` for which ``request`` with ``request[root][key]`` set to
        the candidate is an ALLOW, in order, at most ``limit`` of them (all when negative): the
        AuthZEN search (pdp.authzen.search). The request is validated once (RequestError as
        ``decide``); a candidate no valid request could carry there is left out. No Decision is
        built: a forbid that applies or fails rules the candidate out, then a permit that
        applies admits it, as ``run`` decides."""
        cdef double arrival = _nanos(CLOCK_REALTIME) / 1e9
        cdef object probe = candidate_probe(request, root, key)
        cdef tuple roots = _plain_request(probe)
        if roots is None:
            roots = _roots(parse_request(probe, arrival))
        cdef int slot = ROOT_KEYS.index(root)
        cdef dict entity = dict(roots[slot])  # this copy alone carries each candidate in turn
        cdef list filled = list(roots)
        filled[slot] = entity
        roots = tuple(filled)
        cdef _Context ctx = _Context.__new__(_Context)
        cdef list out = []
        cdef Py_ssize_t i = -1
        for candidate in candidates:
            i += 1
            if type(candidate) is not str or not _clean(<PyObject*>candidate) or not candidate:
                candidate = candidate_value(root, key, candidate)
                if candidate is None:
                    continue
            entity[key] = candidate
            try:
                if not self._allows(ctx, roots, arrival):
                    continue
            except Exception:  # a bug: that candidate fails closed, as decide_many's request would
                continue
            out.append(i)
            if len(out) == limit:
                break
        ctx.clear_slots()
        return out

    cdef bint _allows(self, _Context ctx, tuple roots, double arrival) except -1:
        """``run``'s decision is ALLOW, without its reasons, errors or Decision."""
        ctx.set_roots(roots)
        self._start(ctx, arrival)
        cdef object forbids = self.forbid_tree, permits = self.permit_tree
        cdef _Both both
        if self.both is not None:
            both = self._top(ctx)
            forbids, permits = both.forbid, both.permit
        cdef _Leaf leaf = self._leaf(forbids, ctx)
        cdef Py_ssize_t i
        for i in range(leaf.count):
            if _applies(<_Entry>leaf.entries[i], ctx) is not False:  # applies, or fails closed
                return False
        leaf = self._leaf(permits, ctx)
        for i in range(leaf.count):
            if _applies(<_Entry>leaf.entries[i], ctx) is True:
                return True
        return False

    cdef object run(self, _Context ctx, tuple roots, double arrival, bint keep=False):
        """Decide the request whose four roots (ROOT_KEYS order) are ``roots``, in ``ctx``
        (a fresh one, or one reused by a batch: every field but the token is set here).
        ``keep``: leave the CACHED slots filled (the limits' claims read them next; the
        caller clears them)."""
        ctx.set_roots(roots)
        return self._run(ctx, arrival, keep)

    cdef object _run(self, _Context ctx, double arrival, bint keep):
        """``run`` of the request whose roots ``ctx`` holds already."""
        cdef long long started = _nanos(CLOCK_MONOTONIC)
        self._start(ctx, arrival)
        cdef _Flat flat = self.skeleton.take() if self.flat else None
        cdef object forbids = self.forbid_tree, permits = self.permit_tree
        cdef _Both both
        if self.both is not None:
            both = self._top(ctx)
            forbids, permits = both.forbid, both.permit
        cdef tuple reasons = self._phase(forbids, ctx, flat)
        cdef str decision
        if reasons is not None:
            decision = _DENY
        else:
            reasons = self._phase(permits, ctx, flat)
            if reasons is not None:
                decision = _ALLOW
            else:
                decision, reasons = _DENY, _DEFAULT_REASONS
        if not keep:
            ctx.clear_slots()  # the values are no longer needed; the _Slots go back to spare
        if flat is not None:
            self.skeleton.give_back(flat)
        return _decision(decision, reasons, _EMPTY if ctx.errors is None else tuple(ctx.errors),
                         self.revision, _nanos(CLOCK_MONOTONIC) - started)

    cdef inline _Both _top(self, _Context ctx):
        """The _Both of the request in ``ctx`` in ``self.both`` (as _leaf's first step)."""
        cdef _Switch s = self.both
        cdef object value = s.path.ev(ctx)
        if type(value) is str:
            return <_Both>s.branch(<str>value)
        if type(value) is _Err and s.error is not None:
            return <_Both>s.error
        return <_Both>s.default

    cdef inline _Leaf _leaf(self, object tree, _Context ctx):
        """The leaf of ``tree`` that the request in ``ctx`` reaches."""
        cdef _Switch s
        cdef object value
        while type(tree) is _Switch:
            s = <_Switch>tree
            value = s.path.ev(ctx)
            if type(value) is str:
                tree = s.branch(<str>value)
            elif type(value) is _Err:
                tree = s.error
            else:
                tree = s.default
        return <_Leaf>tree

    cdef tuple _phase(self, object tree, _Context ctx, _Flat flat):
        """The reasons of the rules that apply (None when none does); errors go to ctx.errors."""
        cdef _Leaf leaf = self._leaf(tree, ctx)
        cdef int i, m, count = 0, used = 0
        cdef const int* outs
        cdef PyObject* static
        cdef tuple out
        if flat is None or leaf.start == _NO_PROGRAM:
            if leaf.count <= _FEW_RULES:
                return self._phase_few(leaf, ctx)
            reasons = self._phase_by_nodes(leaf, ctx)
            return None if reasons is None else tuple(reasons)
        m = self.skeleton.leaf(leaf.start, ctx, flat)
        if m == 0:
            return None
        outs = flat.outs
        for i in range(m):  # the reasons: rules that apply, forbids that fail closed
            if outs[2 * i + 1] < 0 or (<_Entry>leaf.entries[outs[2 * i]]).rule.forbid:
                count += 1
        if count == 0:
            self._phase_errors(leaf, flat, 0, m, ctx, None, 0)
            return None
        out = _tuple_new(count)  # (the items past ``used`` stay NULL)
        cdef PyObject** items = _tuple_items(<PyObject*>out)
        cdef PyObject** statics = leaf.entries + leaf.count
        for i in range(m):
            # The common case in C: a rule that applies with a static reason (one reference
            # more to it, nothing else read); the others below.
            if outs[2 * i + 1] < 0:
                static = statics[outs[2 * i]]
                if static != NULL:
                    _incref(static)
                    items[used] = static
                    used += 1
                    continue
            used = self._phase_errors(leaf, flat, i, i + 1, ctx, out, used)
        return out

    cdef int _phase_errors(self, _Leaf leaf, _Flat flat, int first, int end, _Context ctx, tuple out,
                           int used) except -1:
        """_phase's outcomes ``first`` to ``end`` that are not a static reason: a reason with
        parts, or a rule that failed (its RuleError; for a forbid, its reason). The reasons go
        to ``out`` from ``used`` on (None: there are none); returns the new ``used``."""
        cdef const int* outs = flat.outs
        cdef int i, e
        cdef PyObject* static
        cdef object reason
        for i in range(first, end):
            e = outs[2 * i]
            if outs[2 * i + 1] < 0:
                static = leaf.entries[leaf.count + e]
                if static != NULL:
                    reason = <object>static
                else:
                    reason = self._reason((<_Entry>leaf.entries[e]).rule, ctx)
            else:
                reason = _failed_reason((<_Entry>leaf.entries[e]).rule,
                                        (<_Err>self.skeleton.error(outs[2 * i + 1], flat)).text(), ctx)
                if reason is None:
                    continue
            Py_INCREF(reason)
            PyTuple_SET_ITEM(out, used, reason)
            used += 1
        return used

    cdef tuple _phase_few(self, _Leaf leaf, _Context ctx):
        """_phase_by_nodes of a leaf of at most _FEW_RULES rules, its reasons gathered in a C
        array and moved into the tuple (no list made, grown, copied and freed)."""
        cdef PyObject* found[_FEW_RULES]  # owned references below ``n``
        cdef int n = 0, i
        cdef object applies, reason
        cdef PyObject* static
        try:
            for i in range(leaf.count):
                applies = _applies(<_Entry>leaf.entries[i], ctx)
                if applies is False:
                    continue
                if applies is True:
                    static = leaf.entries[leaf.count + i]
                    if static != NULL:
                        _incref(static)
                        found[n] = static
                        n += 1
                        continue
                    reason = self._reason((<_Entry>leaf.entries[i]).rule, ctx)
                else:
                    reason = _failed_reason((<_Entry>leaf.entries[i]).rule, (<_Err>applies).text(), ctx)
                    if reason is None:
                        continue
                _incref(<PyObject*>reason)
                found[n] = <PyObject*>reason
                n += 1
        except BaseException:
            for i in range(n):
                _xdecref(found[i])
            raise
        if n == 0:
            return None
        cdef tuple out = _tuple_new(n)
        memcpy(_tuple_items(<PyObject*>out), found, n * sizeof(PyObject*))  # (the references move)
        return out

    cdef list _phase_by_nodes(self, _Leaf leaf, _Context ctx):
        """_phase on the linked nodes, for leaves of a few rules. A rule's _Rule (linked
        before every leaf, away from them) is read only when it applies with a reason that has
        parts, or fails: one cold line less per rule that does not apply (the leaf keeps the
        static reasons beside its entries)."""
        cdef list reasons = None
        cdef object applies
        cdef PyObject* static
        cdef Py_ssize_t i
        for i in range(leaf.count):
            applies = _applies(<_Entry>leaf.entries[i], ctx)
            if applies is True:
                if reasons is None:
                    reasons = []
                static = leaf.entries[leaf.count + i]
                if static != NULL:
                    reasons.append(<object>static)
                else:
                    reasons.append(self._reason((<_Entry>leaf.entries[i]).rule, ctx))
            elif applies is not False:
                reasons = self._failed((<_Entry>leaf.entries[i]).rule, (<_Err>applies).text(), ctx, reasons)
        return reasons

    cdef list _failed(self, _Rule rule, str message, _Context ctx, list reasons):
        """_failed_reason, its reason added to ``reasons`` (returned: made when None)."""
        cdef object reason = _failed_reason(rule, message, ctx)
        if reason is not None:
            if reasons is None:
                reasons = []
            reasons.append(reason)
        return reasons

    cdef object _reason(self, _Rule rule, _Context ctx):
        """The reason of a rule whose message reports request values: its parts (constant
        strings, split at load, and nodes) worded and joined."""
        cdef tuple template = rule.reason
        cdef Py_ssize_t n = len(template), i, used = 0, size = 0
        cdef tuple out = _tuple_new(n)  # (the parts past ``used`` stay NULL)
        cdef object value, part
        for i in range(n):
            if size > _MAX_REASON_CHARS:
                break  # cut here whatever comes next (as the reference does)
            part = <object>PyTuple_GET_ITEM(template, i)
            if type(part) is not str:
                value = (<_Node>part).ev(ctx)
                if type(value) is _Err:
                    part = "{?}"
                elif type(value) is str:
                    part = value
                else:
                    part = _rendered(value)
                    if part is None:
                        try:
                            part = render(value)
                        except EvalError:
                            part = "{?}"
            Py_INCREF(part)
            PyTuple_SET_ITEM(out, used, part)
            used += 1
            size += len(<str>part)
        message = _concat(out, used, size) if used else ""
        if size > _MAX_REASON_CHARS:  # size: the message's length, or past the limit when cut short
            message = cap_reason(message)
        return _reason_of(rule.id, "forbid" if rule.forbid else "permit", message, rule.annotations)


cdef const char* _CLAIMS_CAPSULE = "pdp.runtime._ceval.decide_into"


cdef object _decide_into(object evaluator, object raw, PyObject** claims_out):
    """``Evaluator.decide_into`` with no token, as a plain C function (``claims_capsule``)."""
    return (<Evaluator>evaluator).decide_into(raw, None, claims_out)
