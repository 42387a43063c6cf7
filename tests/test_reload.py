"""Hot reload: a good push swaps atomically, a broken push or one that fails its own suites is
rejected while the previous revision keeps serving; under concurrent load no call fails and
each revision answers consistently; --watch sees file changes."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest
from serverkit import ALLOWED, WAIT, running

from pdp.errors import PolicyError
from pdp.server import EngineHolder, ServerOptions
from pdp.server.metrics import Metrics
from pdp.server.reload import PathSource, Rejected, Reloader, is_watched, watch_roots
from pdp.v1 import decision_pb2 as pb
from pdp.v1 import decision_pb2_grpc as pb_grpc
from pdp.wire import request_to_pb

VERSION = """\
policy payments {{
  target resource.type == "payment"
  permit billing_may_charge
    when identity.id == "billing" and action.name == "charge"
    reason "{version}"
}}
"""
SUITE = """\
suite: reload
tests:
  - name: billing may charge
    identity: {type: workload, id: billing}
    action: charge
    resource: {type: payment, id: p1}
    expect: allow
"""
BROKEN = "policy payments {\n  permit oops when identity.id ==\n}\n"
#: Loads, but its suite expects billing to be allowed.
FAILS_ITS_SUITE = VERSION.format(version="x").replace('identity.id == "billing"', 'identity.id == "nobody"')


def _write(root: Path, policy: str) -> None:
    (root / "payments.pdl").write_text(policy, encoding="utf-8")


@pytest.fixture
def policy_dir(tmp_path):
    root = tmp_path / "policies"
    root.mkdir()
    _write(root, VERSION.format(version="v1"))
    (root / "payments_test.yaml").write_text(SUITE, encoding="utf-8")
    return root


def test_path_source_gates_on_load_and_on_the_suites(policy_dir):
    source = PathSource((str(policy_dir),))
    assert source.build().decide(ALLOWED).reasons[0].message == "v1"
    _write(policy_dir, FAILS_ITS_SUITE)
    with pytest.raises(Rejected, match="1 of 1 policy tests failed; first: reload::billing may charge"):
        source.build()
    assert not PathSource((str(policy_dir),), run_suites=False).build().decide(ALLOWED).allowed
    _write(policy_dir, BROKEN)
    with pytest.raises(PolicyError):
        source.build()
    _write(policy_dir, VERSION.format(version="v1"))
    (policy_dir / "payments_test.yaml").write_text("suite: x\ntests: [{name: t, bogus: 1}]\n", encoding="utf-8")
    with pytest.raises(PolicyError):  # a suite that does not read is a rejection too
        source.build()


def test_reload_swaps_rejects_and_reports(policy_dir):
    source = PathSource((str(policy_dir),))
    holder = EngineHolder(source.build())
    results = []
    reloader = Reloader(holder, source, on_result=results.append)
    first = holder.revision

    assert reloader.reload_now().result == "unchanged"
    _write(policy_dir, BROKEN)
    rejected = reloader.reload_now()
    assert rejected.result == "rejected" and "payments.pdl:3:1: unexpected" in rejected.error
    assert holder.revision == first
    _write(policy_dir, FAILS_ITS_SUITE)
    assert reloader.reload_now().result == "rejected" and holder.revision == first
    _write(policy_dir, VERSION.format(version="v2"))
    ok = reloader.reload_now()
    assert ok.result == "ok" and ok.previous == first and ok.revision == holder.revision != first
    assert holder.engine.decide(ALLOWED).reasons[0].message == "v2"
    assert [r.result for r in results] == ["unchanged", "rejected", "rejected", "ok"]


def test_reload_requests_run_in_the_background(policy_dir):
    source = PathSource((str(policy_dir),))
    holder = EngineHolder(source.build())
    done = threading.Event()
    reloader = Reloader(holder, source, on_result=lambda r: done.set()).start()
    try:
        _write(policy_dir, VERSION.format(version="v2"))
        reloader.request()
        assert done.wait(WAIT)
        assert holder.engine.decide(ALLOWED).reasons[0].message == "v2"
    finally:
        reloader.stop()


def test_reload_under_concurrent_load_fails_no_call_and_each_revision_answers_consistently(policy_dir):
    source = PathSource((str(policy_dir),))
    holder = EngineHolder(source.build())
    metrics = Metrics()
    reloader = Reloader(holder, source, on_result=lambda r: metrics.reloaded(r.result))
    expected = {holder.revision: "v1"}  # revision ⇒ the message its engine gives
    answers: list[tuple[str, str]] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    answered = threading.Event()
    lock = threading.Lock()

    with running(holder, ServerOptions(metrics=metrics)) as (_, port):
        def client(form: str) -> None:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.DecisionServiceStub(channel)
                msg = request_to_pb(ALLOWED, form=form)
                batch = pb.CheckBatchRequest(requests=[msg] * 5)
                for i in range(20_000):  # bounded; `stop` ends it long before
                    if stop.is_set():
                        return
                    try:
                        if i % 2:
                            out = [stub.Check(msg, timeout=WAIT)]
                        else:
                            out = list(stub.CheckBatch(batch, timeout=WAIT).responses)
                            # One batch, one revision.
                            assert len({r.revision for r in out}) == 1, out
                    except BaseException as exc:  # noqa: BLE001 - every failure counts
                        failures.append(exc)
                        return
                    with lock:
                        answers.extend((r.revision, r.reasons[0].message) for r in out)
                    answered.set()

        threads = [threading.Thread(target=client, args=(form,)) for form in ("value", "msgpack", "msgpack")]
        for t in threads:
            t.start()
        try:
            def push(policy: str, result: str) -> None:
                answered.clear()
                assert answered.wait(WAIT)  # calls are in flight across the reload
                _write(policy_dir, policy)
                outcome = reloader.reload_now()
                assert outcome.result == result, outcome.error
                if result == "ok":
                    expected[outcome.revision] = policy.split('reason "')[1].split('"')[0]

            push(VERSION.format(version="v2"), "ok")
            push(BROKEN, "rejected")
            push(FAILS_ITS_SUITE, "rejected")
            push(VERSION.format(version="v3"), "ok")
            answered.clear()
            assert answered.wait(WAIT)
        finally:
            stop.set()
            for t in threads:
                t.join(WAIT)
    assert not failures, failures[:3]
    assert answers
    for revision, message in set(answers):
        assert expected[revision] == message
    assert answers[-1][0] == holder.revision and expected[holder.revision] == "v3"
    value = metrics.registry.get_sample_value
    assert value("pdp_reloads_total", {"result": "ok"}) == 2
    assert value("pdp_reloads_total", {"result": "rejected"}) == 2


def test_watch_reloads_on_a_file_change(policy_dir):
    source = PathSource((str(policy_dir),))
    holder = EngineHolder(source.build())
    done = threading.Event()
    reloader = Reloader(holder, source, on_result=lambda r: r.result == "ok" and done.set()).start().watch(50)
    try:
        # The watcher starts asynchronously: write until it has seen a change (bounded).
        for attempt in range(20):
            _write(policy_dir, VERSION.format(version=f"v-watch-{attempt}"))
            if done.wait(1.5):
                break
        assert done.is_set()
        assert holder.engine.decide(ALLOWED).reasons[0].message.startswith("v-watch-")
    finally:
        reloader.stop()


def test_what_the_watcher_counts_as_a_change(tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    single = tmp_path / "other" / "one.pdl"
    single.parent.mkdir()
    single.write_text("")
    roots, folders, files = watch_roots([folder, single])
    assert set(roots) == {folder.resolve(), single.parent.resolve()}
    assert is_watched(folder.resolve() / "a.pdl", folders, files)
    assert is_watched(folder.resolve() / "sub" / "x.data.yaml", folders, files)
    assert is_watched(folder.resolve() / "x_test.yaml", folders, files)
    assert not is_watched(folder.resolve() / "notes.txt", folders, files)
    assert not is_watched(folder.resolve() / ".git" / "a.pdl", folders, files)
    assert not is_watched(folder.resolve() / ".a.pdl.swp", folders, files)
    assert is_watched(single.resolve(), folders, files)
    assert not is_watched(single.parent.resolve() / "two.pdl", folders, files)


COVERED = """
policy payments {
  target resource.type == "payment"
  permit billing when identity.id == "billing" and action.name == "charge" reason "v1"
  forbid dev when identity.env == "dev"
}
"""
COVERING_SUITE = """\
suite: covered
tests:
  - name: billing may charge
    identity: {type: workload, id: billing, env: prod}
    action: charge
    resource: {type: payment, id: p1}
    expect: allow
  - name: dev may not
    identity: {type: workload, id: billing, env: dev}
    action: charge
    resource: {type: payment, id: p1}
    expect: deny
"""


def test_min_coverage_refuses_a_set_its_suites_cover_too_little(tmp_path):
    root = tmp_path / "policies"
    root.mkdir()
    (root / "payments.pdl").write_text(COVERED, encoding="utf-8")
    (root / "payments_test.yaml").write_text(COVERING_SUITE, encoding="utf-8")
    assert PathSource((str(root),), min_coverage=100).build().rule_ids == ["payments.billing", "payments.dev"]
    # a third rule no test makes apply: 2 of 3 rules covered
    (root / "payments.pdl").write_text(COVERED.replace("}\n", "  permit refunds when action.name == \"refund\"\n}\n"),
                                       encoding="utf-8")
    with pytest.raises(Rejected, match=r"coverage by the policies' own suites is 66\.7% \(2 of 3 rules applied in "
                                       r"some test, 1 suite\), below the minimum of 80% \(--min-coverage\); no test "
                                       r"makes these apply: payments\.refunds"):
        PathSource((str(root),), min_coverage=80).build()
    assert PathSource((str(root),), min_coverage=66).build().rule_ids[-1] == "payments.refunds"
    assert PathSource((str(root),)).build()  # no minimum: served
    # without suites nothing is covered
    (root / "payments_test.yaml").unlink()
    with pytest.raises(Rejected, match=r"is 0\.0% \(0 of 3 rules .*no \*_test\.yaml suites\)"):
        PathSource((str(root),), min_coverage=1).build()
