"""examples/tokens/: the README walkthrough (pdp token keygen/mint, pdp eval --trust) and the suite."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from pdp.cli import main
from pdp.tokens import load_trust
from pdp.tokens.binding import certificate_thumbprint

from serverkit import make_certs

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tokens"


def _run(argv, capsys, stdin: str | None = None) -> tuple[int, str]:
    capsys.readouterr()
    if stdin is not None:
        old, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        code = main(argv)
    finally:
        if stdin is not None:
            sys.stdin = old
    return code, capsys.readouterr().out


def _request(token: str, action: str = "charge") -> str:
    return json.dumps({"identity": {"type": "workload", "id": "billing"}, "action": action,
                       "resource": {"type": "payment", "id": "pay-42"}, "context": {"token": token}})


def test_the_committed_key_set_is_public_and_the_suite_passes(capsys):
    trust = load_trust(EXAMPLE / "trust.yaml")  # loads: parse_jwks refuses private keys
    assert list(trust.issuers) == ["https://sts.acme.example"]
    text = (EXAMPLE / "keys" / "sts.jwks.json").read_text()
    assert '"d"' not in text
    assert _run(["test", str(EXAMPLE / "policies")], capsys)[0] == 0


def test_the_walkthrough(tmp_path, capsys):
    folder = tmp_path / "tokens"
    shutil.copytree(EXAMPLE, folder)
    private = tmp_path / "sts.jwk"
    jwks = folder / "keys" / "sts.jwks.json"
    assert _run(["token", "keygen", "--alg", "ES256", "--kid", "demo-1", "--private", str(private),
                 "--jwks", str(jwks)], capsys)[0] == 0
    assert private.stat().st_mode & 0o777 == 0o600
    assert [k["kid"] for k in json.loads(jwks.read_text())["keys"]] == ["sts-2026-11", "demo-1"]
    mint = ["token", "mint", "--key", str(private), "--iss", "https://sts.acme.example", "--aud", "payments-api",
            "--sub", "spiffe://acme.prod/ns/billing/sa/api", "--scope", "payments:write"]
    evaluate = ["eval", str(folder / "policies"), "--trust", str(folder / "trust.yaml"), "--request", "-"]

    def decide(*extra, action="charge") -> dict:
        code, token = _run(mint + list(extra), capsys)
        assert code == 0
        code, out = _run(evaluate, capsys, stdin=_request(token.strip(), action))
        assert code == 0
        return json.loads(out)

    allowed = decide("--lifetime", "15m")
    assert allowed["decision"] == "ALLOW"
    assert allowed["reasons"][0]["message"] == \
        "spiffe://acme.prod/ns/billing/sa/api charges with a token from https://sts.acme.example"
    for extra, message in [(("--issued", "2h", "--lifetime", "1h"), "token rejected: expired"),
                           (("--lifetime", "2h"), "token rejected: lifetime: 7200s; the limit is 3600s")]:
        assert decide(*extra)["reasons"] == [{"rule": "pdp.token", "effect": "forbid", "message": message,
                                              "annotations": {}}]
    assert decide("--issued", "20m", "--lifetime", "30m")["reasons"][0]["rule"] == "payments.old_token"
    assert decide(action="refund")["reasons"][0]["rule"] == "payments.refund_needs_bound_token"
    # --aud other-api: the audience check
    code, token = _run([*mint[:7], "other-api", *mint[8:]], capsys)
    code, out = _run(evaluate, capsys, stdin=_request(token.strip()))
    assert json.loads(out)["reasons"][0]["message"] == "token rejected: audience"


def test_bound_tokens_and_thumbprints(tmp_path, capsys):
    certs = make_certs(tmp_path / "certs")
    code, out = _run(["token", "thumbprint", str(certs.client_cert)], capsys)
    assert code == 0 and out.strip() == certificate_thumbprint(certs.client_cert.read_bytes())
    private = tmp_path / "k.jwk"
    assert _run(["token", "keygen", "--alg", "EdDSA", "--kid", "k", "--private", str(private),
                 "--jwks", str(tmp_path / "k.jwks.json")], capsys)[0] == 0
    code, token = _run(["token", "mint", "--key", str(private), "--iss", "i", "--aud", "a", "--sub", "s",
                        "--bind-cert", str(certs.client_cert), "--claim", "level=3", "--claim", "team=pay"], capsys)
    assert code == 0
    import base64
    payload = json.loads(base64.urlsafe_b64decode(token.strip().split(".")[1] + "=="))
    assert payload["cnf"] == {"x5t#S256": out.strip()} and payload["level"] == 3 and payload["team"] == "pay"
    assert _run(["token", "thumbprint", str(private)], capsys)[0] == 1


@pytest.mark.parametrize("name", ["README.md", "trust.yaml", "request.json"])
def test_example_files_exist(name):
    assert (EXAMPLE / name).is_file()
