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
"""

from __future__ import annotations

from .ir import AND, NOT, OR

#: Branch targets that end a program.
TRUE, FALSE = -1, -2


def programs(kinds: list[int | None], kids: list[list[int]], clauses: set[int]) -> tuple[dict[int, int], list[tuple]]:
    """``kinds[n]``: node ``n``'s operator (AND, OR, NOT) or None for an atom; ``kids[n]`` its
    children; ``clauses``: the nodes evaluated from outside (rules' clauses). The start step
    of every and/or/not node evaluated as a whole (a clause, or a node with two parents or
    more), and the steps ``(node, on_true, on_false, parent operator)``; each program's steps
    are in evaluation order, one after the other."""
    parents = [0] * len(kinds)
    for children in kids:
        for k in children:
            parents[k] += 1
    whole = {n for n in range(len(kinds)) if kinds[n] is not None and (n in clauses or parents[n] > 1)}
    starts: dict[int, int] = {}
    steps: list[tuple] = []
    for root in sorted(whole):
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
        base, last = len(steps), len(mine) - 1

        def place(target: int) -> int:  # local (reversed) index ⇒ global, in evaluation order
            return target if target < 0 else base + last - target

        for node, on_true, on_false, parent in reversed(mine):
            steps.append((node, place(on_true), place(on_false), parent))
        starts[root] = place(first)
    return starts, steps

