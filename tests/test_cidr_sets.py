"""A request's address checked against several CIDR sets (the compiled evaluator parses it once
a request and keeps it for the next sets, and for the next requests of a batch while it is
the same text): decisions, reasons and errors are the reference evaluator's."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdp

from strategies import write_policy_set
from test_differential import _IP_TEXTS, _check_all

_RULES = (
    '  forbid outside_env when context.source_ip not in cidr(data.nets[identity.env]) reason "{context.source_ip}"\n'
    '  forbid from_office when context.source_ip in cidr("192.168.1.0/24", "fd00::/8") reason "office"\n'
    '  permit mapped when context.source_ip in cidr("::ffff:10.0.0.0/104")\n'
    '  permit other when context.other in cidr(data.nets[identity.env])\n'
    '  permit any when context.source_ip in cidr("0.0.0.0/0", "::/0")\n'
)
_DATA = {"nets": {"prod": ["10.0.0.0/8", "2001:db8::/32"], "dev": ["192.168.0.0/16", "fd00::/8", "0.0.0.0/32"]}}


def test_one_address_against_several_sets(tmp_path):
    engine = pdp.load(write_policy_set(tmp_path / "s", [f"policy p {{\n{_RULES}}}\n"], _DATA), backend="reference")
    reqs = [{"identity": {"type": "w", "id": "x", "env": env}, "action": "r", "resource": {"type": "t"},
             "context": {"source_ip": ip, "other": other}}
            for env in ("prod", "dev") for ip in _IP_TEXTS for other in (ip, "10.9.9.9")]
    _check_all(engine, reqs)
    # decide_many reuses one context for the batch: a text kept from one request is never
    # another request's, even when the texts are equal.
    compiled = pdp.load(tmp_path / "s")
    reference = pdp.load(tmp_path / "s", backend="reference")
    assert [d.reasons for d in compiled.decide_many(reqs)] == [reference.decide(r).reasons for r in reqs]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ips=st.lists(st.one_of(st.sampled_from(_IP_TEXTS), st.ip_addresses().map(str)), min_size=1, max_size=8),
       env=st.sampled_from(["prod", "dev", "test"]))
def test_generated_addresses_against_several_sets(tmp_path_factory, ips, env):
    root = tmp_path_factory.mktemp("s")
    engine = pdp.load(write_policy_set(root, [f"policy p {{\n{_RULES}}}\n"], _DATA), backend="reference")
    _check_all(engine, [{"identity": {"type": "w", "id": "x", "env": env}, "action": "r", "resource": {"type": "t"},
                         "context": {"source_ip": ip, "other": ips[0]}} for ip in ips])
