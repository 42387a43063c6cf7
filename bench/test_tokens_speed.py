"""Issue 14's speed figures (bench/TOKENS.md): what a verified token costs in process.

- ``repeated token``: ``engine.decide`` of one request without a token (no trust file), and of
  the same request with a token that was verified before (a trust file; the cached outcome),
  side by side. The budget: the token adds at most 2 µs.
- ``first verification``: ``pdp.tokens.verify`` of a token never seen (what a cache miss
  costs: header and payload parsing, the signature with joserfc, the claims and the view),
  per algorithm.
- ``DPoP``: a DPoP-bound token with a new proof each request, its jti kept in this process
  or in a ``--workers`` parent's store.

Run alone, the machine otherwise idle (medians are what counts):

    pytest bench/test_tokens_speed.py --benchmark-only --benchmark-json=bench/results/tokens.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

import pdp
from pdp.tokens import load_trust, mint
from pdp.tokens.verify import verify

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from tokenkit import key, token, write_trust  # noqa: E402

POLICY = """
policy payments {
  target resource.type == "payment"
  forbid cross_environment when defined(identity.env) and identity.env != resource.env
  permit billing when identity.id == "billing" and action.name in ["charge", "refund"]
}
"""
REQUEST = {"identity": {"type": "workload", "id": "billing", "env": "prod"}, "action": "charge",
           "resource": {"type": "payment", "id": "pay-42", "env": "prod"}, "context": {"source_ip": "10.1.2.3"}}
ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    (root / "p.pdl").write_text(POLICY)
    trust = write_trust(root / "trust", [key(alg, f"k-{alg}") for alg in ALGORITHMS])
    return root, trust


@pytest.mark.parametrize("case", ["no token", "cached token"])
def test_repeated_token(benchmark, setup, case):
    root, trust = setup
    if case == "no token":
        engine, request = pdp.load(root / "p.pdl"), REQUEST
    else:
        engine = pdp.load(root / "p.pdl", trust=trust)
        request = {**REQUEST, "context": {**REQUEST["context"],
                                          "token": token(key("ES256", "k-ES256"), "ES256", lifetime=3600)}}
    assert engine.decide(request).allowed  # and the token is now in the cache
    benchmark.group = "repeated token: one decide"
    benchmark(engine.decide, request)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_first_verification(benchmark, setup, alg):
    _, trust_path = setup
    trust = load_trust(trust_path)
    tok = token(key(alg, f"k-{alg}"), alg, lifetime=3600, client_id="billing", jti="0b6f8f0e-5a5e-4a57")
    assert verify(trust, tok, time.time()).view["claims"]["client_id"] == "billing"
    benchmark.group = "first verification of a token"
    now = time.time()
    benchmark(verify, trust, tok, now)


@pytest.mark.parametrize("replays", ["in process", "parent store"])
def test_a_dpop_proof(benchmark, setup, tmp_path, replays):
    """A DPoP-bound token (cached) with a fresh proof each request: the proof is always new.
    ``replays``: where the proofs' jtis are kept: this process's cache (``pdp.load``), or the
    store a ``pdp serve --workers N`` parent keeps for its workers (one Unix socket round trip
    per proof; the parent's side runs on a thread of this process here)."""
    root, trust = setup
    engine = pdp.load(root / "p.pdl", trust=trust)
    parent = None
    if replays == "parent store":
        from pdp.limits import open_store
        from pdp.limits.shared import ParentStore

        parent = ParentStore(str(tmp_path / "limits.sock"))
        engine.tokens.share_replays(open_store(parent.url, timeout=1.0))
    holder = mint.generate_key("ES256")
    tok = token(key("ES256", "k-ES256"), "ES256", lifetime=3600, cnf={"jkt": mint.jkt(holder)})
    url = "https://api.acme/v1/payments"
    proofs = iter([mint.dpop_proof(holder, "ES256", "POST", url, tok) for _ in range(3000)])
    context = {**REQUEST["context"], "token": tok, "http": {"method": "POST", "url": url}}
    assert engine.decide({**REQUEST, "context": {**context, "dpop": next(proofs)}}).allowed
    benchmark.group = "DPoP: one decide with a new proof"
    try:
        benchmark.pedantic(lambda: engine.decide({**REQUEST, "context": {**context, "dpop": next(proofs)}}),
                           rounds=2000, iterations=1)
    finally:
        if parent is not None:
            parent.close()
