"""And/or/not trees as branch programs: for the compiled evaluator's flat skeleton
(pdp/runtime/_ceval.pyx, ``_Skeleton``).

A tree of and/or/not over atoms is evaluated left to right with short-circuits: an atom's
value decides which atom comes next, or the tree's value. Compiled once, each atom becomes a
step ``(node, on_true, on_false, parent)``: where to go when the atom is true or false (the
next step, or TRUE / FALSE for the whole tree), and the operator right above it (the one
whose words an error names when the atom is not a boolean: ``and expects booleans, got
int``). ``not`` swaps the two branches of its operand; the and/or/not nodes themselves are
never visited. Any other value of an atom (an error, a non-boolean) ends the tree with that
error, as it would climb the tree node by node.

A node reached from two places (a policy's target, a test the CSE shares) is evaluated once
per request: it gets a program of its own, and is one step (its value kept) in the others.

A leaf's rules are one program too (``leaf_programs``): each rule's target, when and unless
chained, the end of one rule the start of the next, so that a rule costs no call. A clause
read once in the leaf, by no rule of the other effect and by no other node (so once a
request) has its steps inlined there; any other is one step that reads the clause's value
(evaluated once a request, by its own program). Rules
in a row that share a target (a policy's) read it once: when it is false the program goes
past all of them, when it fails all of them fail with its error.
"""

from __future__ import annotations

from .ir import AND, NOT, OR

#: Branch targets that end a program.
TRUE, FALSE = -1, -2

#: A leaf program's end (see leaf_programs).
END = -1


def _parents(kinds: list[int | None], kids: list[list[int]]) -> list[int]:
    parents = [0] * len(kinds)
    for children in kids:
        for k in children:
            parents[k] += 1
    return parents


def _emit(root: int, kinds: list[int | None], kids: list[list[int]], whole: set[int]) -> list[tuple]:
    """The steps of ``root``'s tree in evaluation order, the first step first: ``(node,
    on_true, on_false, parent)``, targets a step's index in the list or TRUE / FALSE. A node
    of ``whole`` below the root is one step (its value read)."""
    mine: list[list] = []  # built last step first: a step's successors are known when it is made

    def emit(n: int, on_true: int, on_false: int, parent: int | None) -> int:
        kind = kinds[n]
        if kind is None or (n in whole and n != root):
            mine.append([n, on_true, on_false, parent])
            return len(mine) - 1
        if kind == NOT:
            return emit(kids[n][0], on_false, on_true, NOT)
        nxt = on_true if kind == AND else on_false
        for k in reversed(kids[n]):
            nxt = emit(k, nxt, on_false, AND) if kind == AND else emit(k, on_true, nxt, OR)
        return nxt

    first = emit(root, TRUE, FALSE, None)
    last = len(mine) - 1
    assert first == last  # (the first step is the last one made)

    def place(target: int) -> int:
        return target if target < 0 else last - target

    return [(node, place(on_true), place(on_false), parent) for node, on_true, on_false, parent in reversed(mine)]


def programs(kinds: list[int | None], kids: list[list[int]], clauses: set[int]) -> tuple[dict[int, int], list[tuple]]:
    """``kinds[n]``: node ``n``'s operator (AND, OR, NOT) or None for an atom; ``kids[n]`` its
    children; ``clauses``: the nodes evaluated from outside (rules' clauses). The start step
    of every and/or/not node evaluated as a whole (a clause, or a node with two parents or
    more), and the steps ``(node, on_true, on_false, parent operator)``; each program's steps
    are in evaluation order, one after the other."""
    parents = _parents(kinds, kids)
    whole = {n for n in range(len(kinds)) if kinds[n] is not None and (n in clauses or parents[n] > 1)}
    starts: dict[int, int] = {}
    steps: list[tuple] = []
    for root in sorted(whole):
        base = len(steps)
        starts[root] = base
        for node, on_true, on_false, parent in _emit(root, kinds, kids, whole):
            steps.append((node, on_true if on_true < 0 else base + on_true,
                          on_false if on_false < 0 else base + on_false, parent))
    return starts, steps


def leaf_programs(kinds: list[int | None], kids: list[list[int]], entries: list[tuple[int, int, int, bool]],
                  leaves: list[list[int]]) -> tuple[dict[int, int], list[tuple], list[int], list[tuple]]:
    """Programs of the clauses (as ``programs``) and of each leaf's rules.

    ``entries[e]``: rule entry ``e``'s target, when and unless nodes (-1: none) and whether
    it is a forbid; ``leaves``: each leaf's entries in order. A request reaches one leaf of
    each tree (forbids, permits), so a clause read once in a leaf and by no permit (forbid)
    and no other node is evaluated once a request: its steps are inlined there. Returns
    ``starts`` and ``steps`` of the nodes evaluated as a whole, each leaf's first step in
    the leaf steps (-1: empty), and the leaf steps ``(node, on_true, on_false, parent,
    entry, last, clause, fail)``:

    - ``node``: the node read (-1: none, the value true: a rule with no clause to check);
    - ``on_true`` / ``on_false``: the next step ``pc`` as ``pc << 1 | applies``, ``applies``
      1 when the move ends rule ``entry`` (its place in the leaf) and the rule applies;
      ``pc`` END when the leaf is done;
    - ``parent``: the operator above the node in its clause (None: the node is the clause);
    - on an "other" value (an error, a non-boolean) the rules ``entry`` to ``last`` fail
      on clause ``clause`` (0 target, 1 when, 2 unless), and the program goes on at
      ``fail`` (``pc << 1``).
    """
    parents = _parents(kinds, kids)
    by_effect: tuple[set[int], set[int]] = (set(), set())
    for *clauses, forbid in entries:
        by_effect[bool(forbid)].update(n for n in clauses if n >= 0)
    both = by_effect[0] & by_effect[1]
    starts, steps = programs(kinds, kids, by_effect[0] | by_effect[1])
    whole = set(starts)
    emitted: dict[int, list[tuple]] = {}  # an inlined clause's steps (the same in every leaf)

    def program(n: int, inline: bool) -> list[tuple]:
        if not inline:
            return [(n, TRUE, FALSE, None)]
        found = emitted.get(n)
        if found is None:
            found = emitted[n] = _emit(n, kinds, kids, whole)
        return found

    leaf_starts: list[int] = []
    lsteps: list[tuple] = []
    for leaf in leaves:
        uses: dict[int, int] = {}
        for e in leaf:
            for n in entries[e][:3]:
                uses[n] = uses.get(n, 0) + 1
        inlined = {n for n, count in uses.items()
                   if count == 1 and n >= 0 and kinds[n] is not None and parents[n] == 0 and n not in both}
        leaf_starts.append(len(lsteps) if leaf else -1)
        _leaf(leaf, entries, inlined, program, lsteps)
    return starts, steps, leaf_starts, lsteps


def _leaf(leaf: list[int], entries, inlined: set[int], program, out: list[tuple]) -> None:
    """Append one leaf's steps to ``out`` (see leaf_programs)."""
    count = len(leaf)
    # Each rule's checks: (clause, node, its steps); the first rule of a run of rules that
    # share a target reads it for all of them (``last[i]``: the run's last rule).
    checks: list[list[tuple]] = []
    last = [0] * count
    j = 0
    while j < count:
        target = entries[leaf[j]][0]
        end = j
        while target >= 0 and end + 1 < count and entries[leaf[end + 1]][0] == target:
            end += 1
        for i in range(j, end + 1):
            _, when, unless = entries[leaf[i]][:3]
            last[i] = end
            checks.append([(c, n, program(n, n in inlined))
                           for c, n in ((0, target if i == j else -1), (1, when), (2, unless)) if n >= 0])
        j = end + 1
    base = len(out)
    first = []  # each rule's first step; past the last rule: the end
    pc = base
    for mine in checks:
        first.append(pc)
        pc += sum(len(steps) for _, _, steps in mine) if mine else 1
    first.append(END)
    for i, mine in enumerate(checks):
        nxt = first[i + 1] << 1
        if not mine:  # nothing to check: the rule applies
            out.append((-1, nxt | 1, nxt | 1, None, i, i, 1, nxt))
            continue
        for m, (c, n, steps) in enumerate(mine):
            at = len(out)
            passed = (at + len(steps)) << 1 if m + 1 < len(mine) else nxt | 1
            if c == 0:
                past = first[last[i] + 1] << 1
                on_true, on_false, stop, fail = passed, past, last[i], past  # false: past the rules it targets
            elif c == 1:
                on_true, on_false, stop, fail = passed, nxt, i, nxt
            else:  # unless: the rule applies when it is false
                on_true, on_false, stop, fail = nxt, passed, i, nxt
            for node, t, f, parent in steps:
                out.append((node, (at + t) << 1 if t >= 0 else on_true if t == TRUE else on_false,
                            (at + f) << 1 if f >= 0 else on_true if f == TRUE else on_false,
                            parent, i, stop, c, fail))


#: The farthest a compact leaf step reaches (``relative_steps``): its next steps are 16 bits,
#: ``distance << 1 | applies``.
REACH = 0x7FFF


def relative_steps(lsteps: list[tuple], leaf_starts: list[int], reach: int = REACH) -> tuple[list[tuple], set[int]]:
    """The leaf steps of ``leaf_programs`` with their next steps (``on_true``, ``on_false``,
    ``fail``) as forward distances, as _Skeleton.leaf reads them from 16 bits: ``d << 1 |
    applies`` where step ``pc`` goes on at ``pc + d`` (d ≥ 1: every move is forward), and
    ``0 | applies`` when the leaf is done. And the leaves (their first steps) with a move past
    ``reach`` steps (a policy of thousands of rules in one leaf): their steps' moves are
    left 0 and the leaf is decided rule by rule instead."""
    ends = sorted(s for s in leaf_starts if s >= 0) + [len(lsteps)]
    far: set[int] = set()
    out: list[tuple] = []
    for first, end in zip(ends, ends[1:]):
        mine = []
        for pc in range(first, end):
            node, on_true, on_false, parent, entry, last, clause, fail = lsteps[pc]
            moves = []
            for t in (on_true, on_false, fail):
                to = t >> 1
                if to == END:
                    moves.append(t & 1)
                else:
                    assert pc < to < end  # (forward, within the leaf)
                    if to - pc > reach:
                        far.add(first)
                    moves.append((to - pc) << 1 | (t & 1))
            mine.append((node, moves[0], moves[1], parent, entry, last, clause, moves[2]))
        if first in far:
            mine = [(node, 0, 0, parent, entry, last, clause, 0)
                    for node, _, _, parent, entry, last, clause, _ in mine]
        out.extend(mine)
    return out, far
