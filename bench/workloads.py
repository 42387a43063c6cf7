"""Named benchmark workloads: the same policies and requests for pdp and, where the policy is
expressible, for Cedar (cedarpy), so both can be checked to decide alike before timing.

``targeted(types, rules_per_type)`` builds ``types`` policies, each targeted on one resource
type, with a rotating mix of ten rule shapes (scopes, environments, ownership, roles, SPIFFE
globs, deny lists, tags); ``requests(...)`` draws requests over the same vocabulary.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ACTIONS = ("read", "list", "write", "update", "delete", "admin")
ENVS = ("prod", "staging")


def _shape(k: int, t: str) -> tuple[str, str, str, str]:
    """(effect, name, pdl condition, cedar condition) of rule shape k on resource type t."""
    shapes = [
        ("permit", "read", f'action.name in ["read", "list"] and identity.scopes contains "{t}:read"',
         f'["read", "list"].contains(context.action) && principal.scopes.contains("{t}:read")'),
        ("permit", "write", f'action.name in ["write", "update"] and identity.scopes contains "{t}:write" '
                            f'and identity.env == resource.env',
         f'["write", "update"].contains(context.action) && principal.scopes.contains("{t}:write") '
         f'&& principal.env == resource.env'),
        ("forbid", "cross_env", "identity.env != resource.env and identity.env == \"staging\"",
         'principal.env != resource.env && principal.env == "staging"'),
        ("forbid", "low_level_delete", 'identity.level < 2 and action.name == "delete"',
         'principal.level < 2 && context.action == "delete"'),
        ("permit", "owner", 'resource.owner == identity.id and action.name != "admin"',
         'resource.owner == principal.id && context.action != "admin"'),
        ("permit", "admin_role", f'identity.roles contains_any ["admin", "{t}-admin"]',
         f'principal.roles.containsAny(["admin", "{t}-admin"])'),
        # The glob's `*` covers no `/`, so Cedar's `like` (whose `*` does) means the same here.
        ("forbid", "foreign_workload", f'action.name == "admin" and not (identity.spiffe_id matches "spiffe://acme/ns/{t}/sa/*")',
         f'context.action == "admin" && !(principal.spiffe_id like "spiffe://acme/ns/{t}/sa/*")'),
        ("permit", "public_tags", 'resource.tags contains_all ["public", "reviewed"] and action.name == "read"',
         'resource.tags.containsAll(["public", "reviewed"]) && context.action == "read"'),
        ("forbid", "blocked", 'identity.id in ["svc-blocked-1", "svc-blocked-2"]',
         '["svc-blocked-1", "svc-blocked-2"].contains(principal.id)'),
        ("permit", "list_all", 'action.name == "list" and identity.level >= 1',
         'context.action == "list" && principal.level >= 1'),
    ]
    return shapes[k % len(shapes)]


def targeted(types: int, rules_per_type: int) -> tuple[str, str]:
    """(PDL source, Cedar source) of ``types * rules_per_type`` rules."""
    pdl, cedar = [], []
    for i in range(types):
        t = f"type{i}"
        pdl.append(f"policy {t} {{\n  target resource.type == \"{t}\"")
        for k in range(rules_per_type):
            effect, name, cond, ccond = _shape(k, t)
            rule = f"{name}_{k}"
            pdl.append(f"  {effect} {rule} when {cond}")
            # The resource type is the Cedar entity type (`resource is T` in the scope), Cedar's
            # idiomatic and fastest form of a pdp target on resource.type.
            cedar.append(f'@id("{t}.{rule}")\n{effect}(principal, action, resource is {t}) when {{ {ccond} }};')
        pdl.append("}")
    return "\n".join(pdl) + "\n", "\n".join(cedar) + "\n"


def requests(types: int, count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for n in range(count):
        t = f"type{rng.randrange(types)}"
        who = rng.choice(["svc-a", "svc-b", "svc-blocked-1", "svc-c"])
        out.append({
            "identity": {"type": "workload", "id": who, "env": rng.choice(ENVS), "level": rng.randrange(4),
                         "scopes": rng.sample([f"{t}:read", f"{t}:write", "other:read"], rng.randrange(3)),
                         "roles": rng.sample(["admin", f"{t}-admin", "viewer"], rng.randrange(2)),
                         "spiffe_id": f"spiffe://acme/ns/{rng.choice([t, 'elsewhere'])}/sa/{who}"},
            "action": {"name": rng.choice(ACTIONS)},
            "resource": {"type": t, "id": f"r{n}", "env": rng.choice(ENVS), "owner": rng.choice(["svc-a", "svc-b"]),
                         "tags": rng.sample(["public", "reviewed", "internal"], rng.randrange(3))},
            "context": {"time": "2026-11-27T10:05:00Z", "source_ip": "10.1.2.3"},
        })
    return out


def write_pdl(root: Path, source: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "bench.pdl").write_text(source)
    return root


# ---- Cedar form of the same requests ---------------------------------------------------------


def cedar_batch(reqs: list[dict]) -> tuple[list[dict], str]:
    """cedarpy requests and the entities JSON for them (principal and resource entities)."""
    entities = {}
    principals: dict[str, str] = {}
    cedar_requests = []
    for r in reqs:
        ident, res = r["identity"], r["resource"]
        pid = principals.setdefault(json.dumps(ident, sort_keys=True), f"p{len(principals)}")
        rid = res["id"]
        entities[("Workload", pid)] = {"uid": {"__entity": {"type": "Workload", "id": pid}},
                                       "attrs": {k: v for k, v in ident.items() if k != "type"}, "parents": []}
        entities[(res["type"], rid)] = {"uid": {"__entity": {"type": res["type"], "id": rid}},
                                        "attrs": {k: v for k, v in res.items()}, "parents": []}
        cedar_requests.append({"principal": f'Workload::"{pid}"', "action": f'Action::"{r["action"]["name"]}"',
                               "resource": f'{res["type"]}::"{rid}"', "context": {"action": r["action"]["name"]}})
    return cedar_requests, json.dumps(list(entities.values()))
