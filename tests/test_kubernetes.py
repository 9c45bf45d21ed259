"""deploy/kubernetes/ (issue #16): every manifest is valid against the Kubernetes API's JSON schemas
(kubernetes-validate bundles them: the check runs offline), and the manifests agree with the code:
one replica with its state on a persistent volume, non-root and a read-only root filesystem, the
probes on the progress-aware endpoints and the configured port, the config from the ConfigMap (a
config crm-sync loads) and the secrets from the Secret (exactly those the config names)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sync.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")
# The oldest Kubernetes release still supported upstream when this was written, and the newest
# the validator knows.
VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((KUBE / name).read_text(encoding="utf-8"))
    return document


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = load("statefulset.yaml")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod()["containers"]
    found: dict[str, Any] = only
    return found


def configmap_config(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The ConfigMap's config.toml as crm-sync reads it, its secrets from the Secret's variables."""
    import tomllib

    text = load("configmap.yaml")["data"]["config.toml"]
    for name in load("secret.example.yaml")["stringData"]:
        monkeypatch.setenv(name, "https://hooks.example.test/x" if "URL" in name else "placeholder")
    return parse_config(tomllib.loads(text))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("manifest", [p.name for p in MANIFESTS])
def test_each_manifest_is_valid_against_the_kubernetes_schemas(manifest: str, version: str) -> None:
    kubernetes_validate.validate(load(manifest), version, strict=True)  # raises on any problem


def _misspelt_probe_field(statefulset: dict[str, Any]) -> None:
    statefulset["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/livez"


def _replicas_as_text(statefulset: dict[str, Any]) -> None:
    statefulset["spec"]["replicas"] = "one"


def _no_selector(statefulset: dict[str, Any]) -> None:
    del statefulset["spec"]["selector"]


@pytest.mark.parametrize("damage", [_misspelt_probe_field, _replicas_as_text, _no_selector])
def test_the_validator_catches_a_broken_manifest(damage: Any) -> None:
    broken = load("statefulset.yaml")
    damage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_the_kustomization_lists_every_manifest_but_the_examples() -> None:
    listed = set(load("kustomization.yaml")["resources"])
    assert listed == {p.name for p in MANIFESTS} - {"secret.example.yaml", "ingress.example.yaml"}


def test_webhooks_reach_a_not_ready_pod_and_only_events_are_exposed() -> None:
    """A review: /healthz is the readiness probe and turns 503 while cycles fail, which took the pod
    out of its Services' endpoints, so an Ingress answered 503 to every webhook (Vitally does not
    retry one). The events Service publishes not-ready addresses, on the port the receiver serves;
    the example Ingress routes /events/ to it and nothing else."""
    events = load("events-service.yaml")["spec"]
    assert events["publishNotReadyAddresses"] is True
    assert events["selector"].items() <= load("statefulset.yaml")["spec"]["template"]["metadata"]["labels"].items()
    (port,) = events["ports"]
    assert (
        port["targetPort"] == "metrics"
        and {"name": "metrics", "containerPort": 9465, "protocol": "TCP"} in (container()["ports"])
    )
    (rule,) = load("ingress.example.yaml")["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/events/", "Prefix")
    assert path["backend"]["service"] == {"name": "crm-sync-events", "port": {"name": port["name"]}}


def test_one_replica_of_one_org_with_its_state_on_a_persistent_volume() -> None:
    statefulset, service = load("statefulset.yaml"), load("service.yaml")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1  # one writer per state database; a second instance exits 4
    assert spec["serviceName"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]]["mountPath"] == "/var/lib/crm-sync"
    assert pod()["terminationGracePeriodSeconds"] >= 30  # SIGTERM: the write in flight finishes and commits


def test_non_root_read_only_root_filesystem_and_bounded_resources() -> None:
    containerfile = (ROOT / "deploy" / "Containerfile").read_text(encoding="utf-8")
    uid = re.search(r"useradd .*--uid (\d+)", containerfile)
    assert uid is not None
    security = pod()["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == int(uid.group(1))
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    own = container()["securityContext"]
    assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    writable = {m["mountPath"] for m in container()["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/crm-sync", "/tmp"}  # the state, and temporary copies of it
    resources = container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]


def test_probes_ask_the_progress_aware_endpoints_on_the_configured_port(monkeypatch: pytest.MonkeyPatch) -> None:
    config = configmap_config(monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    live, ready = container()["livenessProbe"], container()["readinessProbe"]
    # Liveness never asks /healthz: a refused key (503 unhealthy) is no reason to restart, and a
    # long first sync answers /livez 200 as long as it progresses (tests/test_first_sync.py).
    assert live["httpGet"]["path"] == "/livez" and ready["httpGet"]["path"] == "/healthz"
    for probe in (live, ready):
        assert ports[probe["httpGet"]["port"]] == config.health_port
    assert config.health_host == "0.0.0.0"  # the kubelet reaches the pod's address, not its loopback
    assert load("service.yaml")["spec"]["ports"][0]["port"] == config.health_port
    # A restart only after the daemon was stuck for stalled_after_seconds and then some.
    assert live["periodSeconds"] * live["failureThreshold"] >= 60


def test_config_from_the_configmap_and_secrets_from_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    config = configmap_config(monkeypatch)
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    config_volume = next(v for v in pod()["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == load("configmap.yaml")["metadata"]["name"]
    containerfile = (ROOT / "deploy" / "Containerfile").read_text(encoding="utf-8")
    config_path = PurePosixPath(re.search(r'"--config", "([^"]+)"', containerfile).group(1))  # type: ignore[union-attr]
    assert PurePosixPath(mounts["config"]["mountPath"]) / "config.toml" == config_path and mounts["config"]["readOnly"]
    assert PurePosixPath(str(config.state_path)).parent == PurePosixPath(mounts["state"]["mountPath"])
    (source,) = container()["envFrom"]
    secret = load("secret.example.yaml")
    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    named = set(re.findall(r'^\w+_env = "(\w+)"', load("configmap.yaml")["data"]["config.toml"], flags=re.MULTILINE))
    assert named == set(secret["stringData"])
    assert all(value == "" for value in secret["stringData"].values())  # placeholders, never a secret
    assert config.vitally.api_key == "placeholder" and config.alerts.slack_webhook_url is not None
