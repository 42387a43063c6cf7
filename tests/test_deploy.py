"""What ships for deploying pdp (Dockerfile, deploy/) is correct by construction, since
Docker and Kubernetes cannot run here: every YAML parses; the Envoy bootstraps are Envoy's own
protobuf messages (xds-protos); every pdp command in the manifests and the Dockerfile is one
pdp's own parser accepts, and they agree with each other (ports, socket paths, user, names).
`pdp health`, which the HEALTHCHECK and the sidecar's probes run, is tested against real
servers. The wheel the Dockerfile builds is tested in tests/test_wheel.py."""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import json_format

# Imported for their messages: the typed_config Any fields of the bootstraps resolve to them.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from serverkit import WAIT, ServeProcess, engine, running, write_policies

from pdp.cli import build_parser, main
from pdp.server.metrics import split_address

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SHIPPED_YAML = sorted(DEPLOY.rglob("*.yaml"))


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name)
    return found[0]


def container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


# ---- every YAML ------------------------------------------------------------------------------


def test_deploy_ships_the_expected_files():
    assert [p.relative_to(DEPLOY).as_posix() for p in SHIPPED_YAML] == [
        "envoy/envoy.yaml", "istio/authorization-policy.yaml", "istio/extension-provider.yaml",
        "kubernetes/central.yaml", "kubernetes/sidecar.yaml"]


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_shipped_yaml_parses(path):
    docs = documents(path)
    assert docs
    for doc in docs:
        assert isinstance(doc, dict)
        if path.parent.name != "envoy":
            assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"]["name"], doc


# ---- Envoy ----------------------------------------------------------------------------------


def bootstrap(doc: dict) -> bootstrap_pb2.Bootstrap:
    """The bootstrap as Envoy reads it: unknown fields and unresolvable Anys are errors."""
    return json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())


def envoy_bootstraps() -> dict[str, bootstrap_pb2.Bootstrap]:
    sidecar_config = find(documents(DEPLOY / "kubernetes" / "sidecar.yaml"), "ConfigMap", "payments-envoy")
    return {"central": bootstrap(documents(DEPLOY / "envoy" / "envoy.yaml")[0]),
            "sidecar": bootstrap(yaml.safe_load(sidecar_config["data"]["envoy.yaml"]))}


def ext_authz_of(boot: bootstrap_pb2.Bootstrap) -> ext_authz_pb2.ExtAuthz:
    (listener,) = boot.static_resources.listeners
    (chain,) = listener.filter_chains
    (network_filter,) = chain.filters
    manager = hcm_pb2.HttpConnectionManager()
    assert network_filter.typed_config.Unpack(manager)
    names = [f.name for f in manager.http_filters]
    assert names == ["envoy.filters.http.ext_authz", "envoy.filters.http.router"]  # authorize before routing
    authz = ext_authz_pb2.ExtAuthz()
    assert manager.http_filters[0].typed_config.Unpack(authz)
    return authz


def cluster(boot: bootstrap_pb2.Bootstrap, name: str):
    return next(c for c in boot.static_resources.clusters if c.name == name)


@pytest.mark.parametrize("which", ["central", "sidecar"])
def test_envoy_asks_pdp_fail_closed_with_a_timeout_and_the_peer_certificate(which):
    boot = envoy_bootstraps()[which]
    authz = ext_authz_of(boot)
    assert authz.failure_mode_allow is False and authz.include_peer_certificate is True
    assert authz.transport_api_version == config_source_pb2.ApiVersion.V3
    timeout = authz.grpc_service.timeout.ToTimedelta().total_seconds()
    assert 0 < timeout <= 0.25
    pdp_cluster = cluster(boot, authz.grpc_service.envoy_grpc.cluster_name)
    options = http_protocol_options_pb2.HttpProtocolOptions()
    assert pdp_cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")  # gRPC needs HTTP/2


def _pdp_endpoint(boot):
    authz = ext_authz_of(boot)
    (group,) = cluster(boot, authz.grpc_service.envoy_grpc.cluster_name).load_assignment.endpoints
    (endpoint,) = group.lb_endpoints
    return endpoint.endpoint.address


def test_the_central_envoy_reaches_the_central_service():
    address = _pdp_endpoint(envoy_bootstraps()["central"]).socket_address
    docs = documents(DEPLOY / "kubernetes" / "central.yaml")
    service = find(docs, "Service", "pdp")
    assert address.address == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    (grpc_port,) = [p for p in service["spec"]["ports"] if p["name"] == "grpc"]
    assert address.port_value == grpc_port["port"]
    # mTLS from clients: Envoy can only hand pdp a peer certificate it asked for
    (listener,) = envoy_bootstraps()["central"].static_resources.listeners
    tls = tls_pb2.DownstreamTlsContext()
    assert listener.filter_chains[0].transport_socket.typed_config.Unpack(tls)
    assert tls.require_client_certificate.value is True


# ---- Kubernetes -----------------------------------------------------------------------------


def pdp_args(args: list[str]):
    """``args`` as ``pdp`` parses them; a usage error fails the test (argparse exits 2)."""
    return build_parser().parse_args(args)


def test_central_deployment():
    docs = documents(DEPLOY / "kubernetes" / "central.yaml")
    deployment = find(docs, "Deployment", "pdp")
    pod = deployment["spec"]["template"]["spec"]
    pdp = container(deployment, "pdp")
    args = pdp_args(pdp["args"])
    assert args.command == "serve" and args.bundle and args.verify_key and args.watch
    host, port = split_address(args.addr)
    assert host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in pdp["ports"]}
    assert ports["grpc"] == port and ports["metrics"] == split_address(args.metrics_addr)[1]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert pdp[probe]["grpc"]["port"] == port  # Kubernetes' gRPC probe: grpc.health.v1
    mounts = {m["mountPath"]: m["name"] for m in pdp["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts.values()) <= set(volumes)
    for path in (args.bundle, args.verify_key):
        assert str(Path(path).parent) in mounts, path
    assert volumes[mounts["/etc/pdp/bundle"]]["configMap"]["name"] == "pdp-bundle"
    assert args.decision_log == "-"  # decision records to stdout: the container log
    assert pdp["securityContext"]["readOnlyRootFilesystem"] and "/tmp" in mounts
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert pod["terminationGracePeriodSeconds"] > args.shutdown_delay + args.grace
    service = find(docs, "Service", "pdp")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)


def test_sidecar_deployment_shares_a_unix_socket():
    docs = documents(DEPLOY / "kubernetes" / "sidecar.yaml")
    deployment = find(docs, "Deployment", "payments-api")
    pod = deployment["spec"]["template"]["spec"]
    pdp, envoy = container(deployment, "pdp"), container(deployment, "envoy")
    args = pdp_args(pdp["args"])
    assert args.command == "serve" and args.paths == ["/policies"] and args.workers == 1
    assert args.addr.startswith("unix://")
    socket_path = Path(args.addr.removeprefix("unix://"))
    # the socket's folder is one emptyDir, mounted in both containers
    volume = {v["name"]: v for v in pod["volumes"]}
    for c in (pdp, envoy):
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == str(socket_path.parent)]
        assert "emptyDir" in volume[mount["name"]]
    assert str(_pdp_endpoint(envoy_bootstraps()["sidecar"]).pipe.path) == str(socket_path)
    # the same user, so that Envoy may connect to the socket pdp creates
    assert pdp["securityContext"]["runAsUser"] == envoy["securityContext"]["runAsUser"] == dockerfile_uid()
    # gRPC probes cannot reach a Unix socket: `pdp health` asks through it
    for probe in ("readinessProbe", "startupProbe"):
        command = pdp[probe]["exec"]["command"]
        assert command[0] == "pdp"
        health = pdp_args(command[1:])
        assert health.command == "health" and health.addr == args.addr
    config = {v["name"]: v for v in pod["volumes"]}["envoy-config"]["configMap"]["name"]
    assert find(docs, "ConfigMap", config)
    assert option(envoy["args"], "-c") == "/etc/envoy/envoy.yaml"


def test_istio_custom_authorization_uses_the_pdp_provider():
    provider_doc = documents(DEPLOY / "istio" / "extension-provider.yaml")[0]
    (provider,) = provider_doc["spec"]["meshConfig"]["extensionProviders"]
    grpc_provider = provider["envoyExtAuthzGrpc"]
    assert grpc_provider["failOpen"] is False and grpc_provider["timeout"] == "0.25s"
    service = find(documents(DEPLOY / "kubernetes" / "central.yaml"), "Service", "pdp")
    assert grpc_provider["service"] == (f"{service['metadata']['name']}.{service['metadata']['namespace']}"
                                        ".svc.cluster.local")
    assert grpc_provider["port"] == service["spec"]["ports"][0]["port"]
    policy = documents(DEPLOY / "istio" / "authorization-policy.yaml")[0]
    assert policy["apiVersion"] == "security.istio.io/v1" and policy["kind"] == "AuthorizationPolicy"
    assert policy["spec"]["action"] == "CUSTOM" and policy["spec"]["provider"]["name"] == provider["name"]
    sidecar = find(documents(DEPLOY / "kubernetes" / "sidecar.yaml"), "Deployment", "payments-api")
    assert policy["spec"]["selector"]["matchLabels"] == sidecar["spec"]["selector"]["matchLabels"]


# ---- the Dockerfile --------------------------------------------------------------------------


def dockerfile() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    logical, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def instructions(stage, name: str) -> list[str]:
    return [rest for instruction, rest in stage if instruction == name]


def build_context_paths() -> list[str]:
    """What the build stage copies from the context: the files a wheel is built from."""
    paths = []
    for rest in instructions(dockerfile()[0], "COPY"):
        *sources, _ = shlex.split(rest)
        paths += [s.rstrip("/") for s in sources if not s.startswith("--")]
    return paths


def dockerfile_uid() -> int:
    runtime = dockerfile()[-1]
    (user,) = instructions(runtime, "USER")
    uid = int(user.split(":")[0])
    (useradd,) = [r for r in instructions(runtime, "RUN") if "useradd" in r]
    assert f"--uid {uid}" in useradd
    return uid


def test_dockerfile_builds_the_compiled_wheel_and_runs_it_as_non_root():
    build, runtime = dockerfile()
    (wheel_step,) = [r for r in instructions(build, "RUN") if "pip wheel" in r]
    # tests/test_wheel.py runs these steps: pdp's wheel, then its dependencies' wheels
    assert "PDP_REQUIRE_EXTENSION=1 pip wheel --no-cache-dir --no-deps -w /wheels ." in wheel_step
    assert "pip wheel --no-cache-dir -w /wheels /wheels/pdp-*.whl" in wheel_step
    for path in build_context_paths():
        assert (REPO / path).exists(), path
    assert dockerfile_uid() != 0
    install = " ".join(instructions(runtime, "RUN"))
    assert "--no-index --find-links /wheels pdp" in install and "runtime.BACKEND == 'compiled'" in install
    assert not any("gcc" in r for r in instructions(runtime, "RUN"))  # no compiler in the runtime image
    copied = [shlex.split(r) for r in instructions(runtime, "COPY")]
    assert ["policies/", "/policies/"] in copied and (REPO / "policies").is_dir()


def test_dockerfile_commands_are_pdp_commands_that_agree():
    runtime = dockerfile()[-1]
    entrypoint = json.loads(instructions(runtime, "ENTRYPOINT")[0])
    command = json.loads(instructions(runtime, "CMD")[0])
    assert entrypoint == ["pdp"]
    serve = pdp_args(command)
    assert serve.command == "serve" and serve.paths == ["/policies"] and serve.decision_log == "-"
    host, port = split_address(serve.addr)
    assert host == "0.0.0.0" and instructions(runtime, "EXPOSE") == [str(port)]
    (healthcheck,) = instructions(runtime, "HEALTHCHECK")
    health_argv = json.loads(healthcheck[healthcheck.index("CMD") + 3:].strip())
    assert health_argv[0] == "pdp"
    health = pdp_args(health_argv[1:])
    assert health.command == "health" and split_address(health.addr) == ("127.0.0.1", port)
    assert re.search(r"--timeout=(\d+)s", healthcheck) and float(
        re.search(r"--timeout=(\d+)s", healthcheck).group(1)) > health.timeout


# ---- pdp health ------------------------------------------------------------------------------


def test_health_says_serving_for_the_server_and_its_services(tmp_path, capsys):
    with running(engine(tmp_path)) as (_, port):
        for service in ("", "pdp.v1.DecisionService", "envoy.service.auth.v3.Authorization"):
            assert main(["health", "--addr", f"127.0.0.1:{port}", "--service", service]) == 0
            assert capsys.readouterr().out == "SERVING\n"
        assert main(["health", "--addr", f"127.0.0.1:{port}", "--service", "no.such.Service"]) == 1
        assert "NOT_FOUND" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_health_fails_when_nothing_answers(capsys):
    port = _closed_port()
    assert main(["health", "--addr", f"127.0.0.1:{port}", "--timeout", "1"]) == 1
    assert capsys.readouterr().err.startswith(f"127.0.0.1:{port}: ")


def test_health_over_tls(tmp_path, capsys):
    from serverkit import make_certs

    from pdp.server.options import ServerOptions, TLSConfig

    certs = make_certs(tmp_path / "certs")
    options = ServerOptions(tls=TLSConfig(certs.server_cert, certs.server_key, certs.ca))
    with running(engine(tmp_path), options) as (_, port):
        addr = f"127.0.0.1:{port}"
        assert main(["health", "--addr", addr, "--root-ca", str(certs.ca), "--cert", str(certs.client_cert),
                     "--key", str(certs.client_key)]) == 0
        assert main(["health", "--addr", addr, "--timeout", "1"]) == 1  # plaintext to a TLS port
    assert main(["health", "--cert", str(certs.client_cert)]) == 2
    assert "--cert and --key go together" in capsys.readouterr().err


def test_health_is_not_serving_while_draining(tmp_path, capsys):
    """Readiness follows the server: the port answers only once the policies are loaded (and
    their suites passed), and from SIGTERM on health is NOT_SERVING while calls still get
    answers for --shutdown-delay."""
    policies = write_policies(tmp_path / "policies")
    with ServeProcess(str(policies), "--addr", "127.0.0.1:0", "--workers", "1", "--shutdown-delay", "3") as server:
        port = server.wait_ready()
        assert main(["health", "--addr", f"127.0.0.1:{port}"]) == 0
        server.signal(signal.SIGTERM)
        server.wait_for("draining: health is NOT_SERVING")
        assert main(["health", "--addr", f"127.0.0.1:{port}"]) == 1
        assert capsys.readouterr().out.splitlines()[-1] == "NOT_SERVING"
        assert server.proc.wait(WAIT) == 0


def _substituted(args: list[str], replacements: dict[str, str]) -> list[str]:
    return [replacements.get(a, a) for a in args]


def test_the_sidecar_command_serves_on_its_socket_and_its_probe_answers(tmp_path, capsys):
    """The sidecar's pdp arguments, as shipped but for the socket's folder and the policies'
    path, start a server its own probe command finds SERVING through the Unix socket."""
    deployment = find(documents(DEPLOY / "kubernetes" / "sidecar.yaml"), "Deployment", "payments-api")
    pdp = container(deployment, "pdp")
    shipped = option(pdp["args"], "--addr")
    address = f"unix://{tmp_path / 'pdp.sock'}"
    args = _substituted(pdp["args"], {shipped: address, "/policies": str(REPO / "policies")})
    assert args[0] == "serve"
    with ServeProcess(*args[1:]) as server:
        server.wait_for(r"serving revision \S+ .* on unix:")
        probe = _substituted(pdp["readinessProbe"]["exec"]["command"], {shipped: address})
        assert main(probe[1:]) == 0 and capsys.readouterr().out == "SERVING\n"
        server.signal(signal.SIGTERM)
        assert server.proc.wait(WAIT) == 0


def test_the_central_command_serves_a_signed_bundle(tmp_path, capsys):
    """The central Deployment's arguments, with the ConfigMaps' files and loopback addresses,
    serve the pipeline's signed bundle; health answers SERVING on its gRPC port."""
    from test_signed_bundle import write_key_pair

    deployment = find(documents(DEPLOY / "kubernetes" / "central.yaml"), "Deployment", "pdp")
    shipped = container(deployment, "pdp")["args"]
    private, public = write_key_pair(tmp_path)
    bundle = tmp_path / "policies.bundle"
    assert main(["build", str(REPO / "policies"), "-o", str(bundle), "--sign", str(private)]) == 0
    args = _substituted(shipped, {option(shipped, "--bundle"): str(bundle),
                                  option(shipped, "--verify-key"): str(public),
                                  option(shipped, "--addr"): "127.0.0.1:0",
                                  option(shipped, "--metrics-addr"): "127.0.0.1:0"})
    with ServeProcess(*args[1:], "--workers", "1") as server:
        port = server.wait_ready()
        assert main(["health", "--addr", f"127.0.0.1:{port}"]) == 0
        server.signal(signal.SIGTERM)
        assert server.proc.wait(WAIT) == 0
