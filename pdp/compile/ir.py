"""The compiled form's node vocabulary: opcodes of the plain-data expression tree.

A node is a tuple ``(opcode, *fields)`` of plain data (ints, strings, tuples, JSON values), so
a program can be written to a bundle with msgpack and read back without parsing. Both
evaluators (``pdp/runtime/pyeval.py`` and ``pdp/runtime/_ceval.pyx``) link these tuples
into their own executable objects.

Fields per opcode:

- ``(CONST, value)``: a JSON value.
- ``(CIDR, networks)``: a constant ``cidr(...)`` set; ``networks`` is a tuple of strings.
- ``(ERROR, message)``: an expression that always fails (a missing ``data`` key).
- ``(PATH, root, keys, texts)``: ``root.k1.k2…`` on a request root; ``texts[i]`` is the source
  text of the path up to ``keys[i]`` (``texts[-1]`` of the whole path), for messages.
- ``(NOW,)``: the request time.
- ``(ATTR, obj, name, obj_text, text)``: ``obj.name`` on a computed map.
- ``(INDEX, obj, key, obj_text)``: ``obj[key]``.
- ``(LIST, items)``: a list built per request.
- ``(NOT, x)``, ``(AND, items)``, ``(OR, items)``.
- ``(COMPARE, op, left, right)``: any level-4 operator.
- ``(EQ_STR, x, text, negate)``: ``x == "text"`` (``!=`` when negate).
- ``(IN_STRS, x, texts, negate)``: ``x in ["a", "b"]`` (``not in`` when negate).
- ``(MATCH_GLOB, x, pattern)``: ``x matches "pattern"``.
- ``(CALL, name, args)``: a built-in other than ``defined``.
- ``(DEFINED, x)``.
- ``(CACHED, slot, x)``: ``x`` evaluated at most once per request (shared sub-expressions and
  ``let``s), its value or its error kept in ``slot``.
- ``(LOOKUP, key, cases, default)``: ``cases[v]`` when the node ``key`` (a PATH) evaluates to a
  string ``v`` that ``cases`` (a dict) holds, else ``default``; ``tabulate.py`` makes them.
"""

CONST, CIDR, ERROR, PATH, NOW, ATTR, INDEX, LIST = 0, 1, 2, 3, 4, 5, 6, 7
NOT, AND, OR, COMPARE, EQ_STR, IN_STRS, MATCH_GLOB, CALL, DEFINED, CACHED = 8, 9, 10, 11, 12, 13, 14, 15, 16, 17
LOOKUP = 18

NAMES = {
    CONST: "CONST", CIDR: "CIDR", ERROR: "ERROR", PATH: "PATH", NOW: "NOW", ATTR: "ATTR",
    INDEX: "INDEX", LIST: "LIST", NOT: "NOT", AND: "AND", OR: "OR", COMPARE: "COMPARE",
    EQ_STR: "EQ_STR", IN_STRS: "IN_STRS", MATCH_GLOB: "MATCH_GLOB", CALL: "CALL",
    DEFINED: "DEFINED", CACHED: "CACHED", LOOKUP: "LOOKUP",
}

from ..request import REQUIRED, ROOT_KEYS, TOKEN_ROOT

#: Request roots a PATH may start from, by index: the request's own (pdp.request), then its
#: verified token, which may be absent (a path on it is then missing).
ROOTS = (*ROOT_KEYS, TOKEN_ROOT)

#: Paths every valid request has as non-empty strings (SPEC §3): they never fail to resolve.
REQUIRED_PATHS = tuple((root, (field,)) for root, field in REQUIRED)

#: The fields after the opcode of each node, by kind (``verify.py`` checks every program
#: against this, so an opcode without an entry cannot be loaded): ``node`` a node; ``nodes``
#: a tuple of nodes; ``node_map`` a dict of strings to nodes; ``value`` a JSON value; ``str``
#: a string; ``strs`` a tuple of strings; ``bool``; ``root`` one of ROOTS; ``path_keys`` and
#: ``path_texts`` the keys of a PATH and their texts (one more); ``operator`` a level-4
#: operator; ``builtin`` a built-in's name, ``args`` its arguments; ``glob`` a valid glob;
#: ``networks`` the strings of a valid ``cidr(...)``; ``slot`` a CACHED slot number.
SHAPES = {
    CONST: ("value",), CIDR: ("networks",), ERROR: ("str",), PATH: ("root", "path_keys", "path_texts"),
    NOW: (), ATTR: ("node", "str", "str", "str"), INDEX: ("node", "node", "str"), LIST: ("nodes",),
    NOT: ("node",), AND: ("nodes",), OR: ("nodes",), COMPARE: ("operator", "node", "node"),
    EQ_STR: ("node", "str", "bool"), IN_STRS: ("node", "strs", "bool"), MATCH_GLOB: ("node", "glob"),
    CALL: ("builtin", "args"), DEFINED: ("node",), CACHED: ("slot", "node"),
    LOOKUP: ("node", "node_map", "node"),
}
