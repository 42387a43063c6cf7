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


def mixed(types: int, rules_per_type: int, untargeted_every: int = 2) -> str:
    """PDL of ``types * rules_per_type`` rules like :func:`targeted`, but every
    ``untargeted_every``-th policy has no target: its rules meet every request."""
    pdl = []
    for i in range(types):
        t = f"type{i}"
        pdl.append(f"policy {t} {{" + ("" if i % untargeted_every == 0 else f'\n  target resource.type == "{t}"'))
        for k in range(rules_per_type):
            effect, name, cond, _ = _shape(k, t)
            pdl.append(f"  {effect} {name}_{k} when {cond}")
        pdl.append("}")
    return "\n".join(pdl) + "\n"


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


# ---- the shipped library (policies/) with a realistic traffic mix -----------------------------

LIBRARY = Path(__file__).resolve().parent.parent / "policies"
#: The request time of the mix; credentials are dated relative to it.
_NOW = 1795773900  # 2026-11-27T10:05:00Z
#: The operations each inventoried workload calls day to day (what the gateway grants it).
_USUAL = {
    "billing": [("payment", "charge"), ("payment", "refund")],
    "billing-staging": [("payment", "charge")],
    "reporting": [("payment", "read")],
    "warehouse": [("inventory", "read"), ("inventory", "reserve"), ("inventory", "release")],
    "storefront": [("inventory", "read"), ("price", "read")],
    "pricing-engine": [("price", "read"), ("price", "update")],
    "fulfillment": [("order", "read"), ("order", "fulfill")],
    "ops-automation": [("admin", "read"), ("admin", "update")],
    "carrier-sync": [("order", "read")],
    "deploy-pipeline": [("admin", "read")],
    "legacy-reconciler": [("payment", "read")],
}
_CERT = "Xx3kqf0lBq7bvuvyNGaqOAMRmBZl5VhLkR8Rv0L1ZtE"


def _stamp(seconds_ago: int) -> str:
    import datetime
    moment = datetime.datetime.fromtimestamp(_NOW - seconds_ago, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def library_requests(data: dict, count: int, seed: int = 5) -> list[dict]:
    """Requests for the shipped library, drawn from its own data inventory: mostly known,
    active identities calling their usual operations of ``data.api`` with fresh tokens from
    their environment's networks (ALLOW); and, at rates a gateway meets them, unknown or
    offboarded identities, stale, long-lived or leaked credentials, API keys (also on
    high-value operations and from CI), certificate-bound tokens (replayed over another
    certificate too), missing scopes and SPIFFE IDs, calls from outside the networks or from
    workstations, browsers, person-obtained tokens, operations the API does not define or the
    workload is not granted, and environments that do not match (DENY)."""
    import ipaddress

    rng = random.Random(seed)
    identities, api, networks = data["identities"], data["api"], data["networks"]
    revoked = list(data["revoked"]["credentials"])
    known = sorted(identities)
    operations = [(rtype, action) for rtype, actions in sorted(api.items()) for action in sorted(actions)]

    def chance(p: float) -> bool:
        return rng.random() < p

    def inside(ranges: list[str]) -> str:
        net = ipaddress.ip_network(rng.choice(ranges))
        return str(net[rng.randrange(1, min(net.num_addresses - 1, 60000))])

    out = []
    for n in range(count):
        who = rng.choice(known) if chance(0.95) else rng.choice(["ghost-svc", "old-batch", "test-runner"])
        entry = identities.get(who, {})
        env = "staging" if who.endswith("-staging") else "prod"
        if chance(0.02):
            env = rng.choice(["staging", "dev"])
        if chance(0.9) and who in _USUAL:
            rtype, action = rng.choice(_USUAL[who])
        elif chance(0.7):
            rtype, action = rng.choice(operations)
        else:
            rtype, action = rng.choice(sorted(api)), rng.choice(["delete", "export"])
        operation = api.get(rtype, {}).get(action, {})
        scopes = sorted({api[t][a]["scope"] for t, a in _USUAL.get(who, [])}) or ["payments:read"]
        if chance(0.05):
            scopes = scopes[:-1]
        if chance(0.01):
            scopes.append("*")
        high_value = bool(operation.get("high_value"))
        kind = rng.choices(["jwt", "x509_svid", "api_key", None], [65, 15, 10, 10])[0]
        if high_value and chance(0.85):
            kind = "jwt"
        credential: dict = {} if kind is None else {"kind": kind}
        if kind == "api_key":
            credential["issued_at"] = _stamp(rng.choice([3, 20, 45, 60, 80, 120]) * 86400)
            credential["id"] = rng.choice(revoked) if chance(0.03) else f"key-{rng.randrange(16**6):06x}"
        else:
            age = rng.choice([10, 40, 90, 150, 240]) if chance(0.95) else rng.choice([900, 2 * 3600])
            credential["issued_at"] = _stamp(age)
            if chance(0.7):
                credential["expires_at"] = _stamp(age - (900 if chance(0.97) else -86400))
            if chance(0.7):
                credential["id"] = rng.choice(revoked) if chance(0.02) else f"jti-{rng.randrange(16**8):08x}"
            if (high_value and chance(0.9)) or chance(0.2):
                credential["cnf"] = {"x5t#S256": _CERT}
            if chance(0.02):
                credential["amr"] = [rng.choice(["pwd", "mfa", "otp"])]
            if chance(0.01):
                del credential["issued_at"]  # a gateway that forgot it: the controls fail closed
        identity = {"type": "workload", "id": who, "env": env, "scopes": scopes, "credential": credential}
        if chance(0.99):
            pattern = entry.get("spiffe_id", "spiffe://acme.prod/ns/unknown/sa/*")
            identity["spiffe_id"] = pattern.replace("*", rng.choice(["api", "worker", "web"])) if chance(0.98) \
                else "spiffe://acme.prod/ns/other/sa/x"
        where = rng.random()
        if where < 0.94:
            ip = inside(entry.get("networks") or networks["environments"].get(env, ["192.0.2.0/24"]))
        elif where < 0.97:
            ip = inside(["192.0.2.0/24", "198.51.100.0/24"])
        else:
            ip = inside(networks["workstations"])
        context: dict = {"time": _stamp(0), "source_ip": ip, "tls": {"peer_cert_sha256": _CERT}}
        if chance(0.01):
            del context["source_ip"]
        if chance(0.02):
            context["tls"] = {"peer_cert_sha256": "9S1fJ3hM0n5m0o8pQxZyYk2WcA7eR4tU6vB1dG3hK5L"}
        if chance(0.3):
            context["headers"] = {"user-agent": "Mozilla/5.0 (X11)" if chance(0.05) else "envoy/1.31 grpc-go/1.66"}
        out.append({"identity": identity, "action": {"name": action},
                    "resource": {"type": rtype, "id": f"{rtype}-{n}", "env": env if chance(0.98) else "dev"},
                    "context": context})
    return out


# ---- 1,000 targeted policies whose conditions test many attributes -----------------------------

_TEAMS = tuple(f"team{i}" for i in range(40))
_REGIONS = ("eu-1", "eu-2", "us-1", "us-2", "ap-1")
_LABELS = ("pii", "public", "finance", "internal", "export")
_CALLERS = tuple(f"svc-{i}" for i in range(60))


def _varied_rule(rng: random.Random, t: str, k: int) -> tuple[str, str]:
    """(effect, condition) of one rule on resource type ``t``: a shape drawn at random, with
    constants of its own (environments, tiers, scopes, actions, networks, SPIFFE globs, data
    lookups, labels, ages)."""
    actions = sorted(rng.sample(ACTIONS, rng.randrange(1, 4)))
    team = rng.choice(_TEAMS)
    net = rng.randrange(256)
    shapes = [
        ("permit", f'action.name in {json.dumps(actions)} and identity.scopes contains "{t}:{actions[0]}"'),
        ("permit", f'action.name == "{actions[0]}" and identity.env == resource.env and identity.tier >= {rng.randrange(4)}'),
        ("forbid", f'identity.env == "{rng.choice(ENVS)}" and resource.env == "{rng.choice(("prod", "dev"))}"'),
        ("forbid", f'identity.tier < {rng.randrange(1, 4)} and action.name in {json.dumps(actions)}'),
        ("permit", 'identity.team == data.catalog.owners[resource.type] and action.name != "delete"'),
        ("forbid", f'context.source_ip in cidr("10.{net}.0.0/16", "fd00:{net:x}::/32")'),
        ("permit", f'identity.spiffe_id matches "spiffe://acme.prod/ns/{team}/sa/*" and action.name == "{actions[0]}"'),
        ("forbid", f'age(identity.credential.issued_at) > {rng.choice((2, 6, 12, 24))}h'),
        ("permit", f'resource.labels contains_any {json.dumps(sorted(rng.sample(_LABELS, 2)))} '
                   f'and identity.tier >= {rng.randrange(1, 4)}'),
        ("forbid", f'identity.id in {json.dumps(sorted(rng.sample(_CALLERS, 3)))}'),
        ("permit", f'context.region in {json.dumps(sorted(rng.sample(_REGIONS, 2)))} and identity.env == "prod"'),
        ("forbid", 'identity.tier < data.catalog.min_tier[resource.type] and action.name != "read"'),
        ("permit", f'resource.owner == identity.id and action.name != "{rng.choice(ACTIONS)}"'),
        ("forbid", f'resource.labels contains "{rng.choice(_LABELS)}" and not (identity.scopes contains "{t}:sensitive")'),
        ("permit", f'identity.roles contains_any ["admin", "{t}-admin"] and identity.team == "{team}"'),
    ]
    return shapes[rng.randrange(len(shapes))]


def varied(types: int, rules_per_type: int, seed: int = 3) -> tuple[str, dict]:
    """(PDL source, data) of ``types`` policies, each targeted on its own resource type, of
    ``rules_per_type`` rules whose shapes and constants are drawn at random (see
    :func:`_varied_rule`), and the data they look up (owning team and minimum tier per type)."""
    rng = random.Random(seed)
    pdl = []
    data = {"owners": {}, "min_tier": {}}
    for i in range(types):
        t = f"svc{i}"
        data["owners"][t] = rng.choice(_TEAMS)
        data["min_tier"][t] = rng.randrange(4)
        pdl.append(f"policy {t} {{\n  target resource.type == \"{t}\"")
        for k in range(rules_per_type):
            effect, cond = _varied_rule(rng, t, k)
            pdl.append(f"  {effect} rule_{k} when {cond}")
        pdl.append("}")
    return "\n".join(pdl) + "\n", data


def write_varied(root: Path, types: int, rules_per_type: int) -> Path:
    source, data = varied(types, rules_per_type)
    write_pdl(root, source)
    (root / "catalog.data.json").write_text(json.dumps(data))
    return root


def varied_requests(types: int, count: int, seed: int = 17) -> list[dict]:
    """Requests for :func:`varied`: a resource type of the set, callers with environments,
    tiers, teams, scopes, roles and SPIFFE IDs, credentials of various ages, sources inside
    and outside the rules' networks; an attribute missing now and then."""
    rng = random.Random(seed)
    out = []
    for n in range(count):
        t = f"svc{rng.randrange(types)}"
        who = rng.choice(_CALLERS)
        team = rng.choice(_TEAMS)
        net = rng.randrange(256)
        identity = {"type": "workload", "id": who, "env": rng.choice(ENVS), "tier": rng.randrange(5), "team": team,
                    "scopes": rng.sample([f"{t}:{a}" for a in ACTIONS] + [f"{t}:sensitive", "other:read"],
                                         rng.randrange(4)),
                    "roles": rng.sample(["admin", f"{t}-admin", "viewer"], rng.randrange(2)),
                    "spiffe_id": f"spiffe://acme.prod/ns/{team}/sa/{who}",
                    "credential": {"issued_at": f"2026-11-27T{rng.randrange(10):02d}:{rng.randrange(60):02d}:00Z"}}
        resource = {"type": t, "id": f"r{n}", "env": rng.choice(("prod", "staging", "dev")),
                    "owner": rng.choice(_CALLERS), "labels": rng.sample(_LABELS, rng.randrange(3))}
        source_ip = f"10.{net}.{rng.randrange(256)}.{rng.randrange(1, 255)}" if rng.random() < 0.8 \
            else f"fd00:{net:x}::{rng.randrange(1, 65535):x}"
        context = {"time": "2026-11-27T10:05:00Z", "source_ip": source_ip, "region": rng.choice(_REGIONS)}
        if rng.random() < 0.05:
            del identity[rng.choice(["tier", "env", "team", "scopes"])]
        out.append({"identity": identity, "action": {"name": rng.choice(ACTIONS)}, "resource": resource,
                    "context": context})
    return out
