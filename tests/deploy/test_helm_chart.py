"""helm/fboc: lint, render, validate against the Kubernetes schemas, and check the configuration.

A real helm (scripts/helm builds and caches it) renders the chart; kubernetes-validate checks the
built-in kinds in strict mode (unknown fields are errors); the CRD kinds (ServiceMonitor,
ScaledObject) are checked against a schema of the fields the chart uses; the rendered ConfigMap
goes through `fboc check-config`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import (
    ALL_ON_VALUES,
    CHART,
    NAMESPACE,
    RELEASE,
    Helm,
    HelmError,
    Manifest,
    by_kind,
    check_config,
    one,
    rendered_config,
)

# The first test may wait for scripts/helm to build helm (minutes on a cold machine).
pytestmark = pytest.mark.timeout(1800)

CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
MIN_KUBE = re.search(r"(\d+\.\d+)", CHART_META["kubeVersion"]).group(1)  # type: ignore[union-attr]
KUBE_VERSIONS = sorted(
    {MIN_KUBE, kubernetes_validate.latest_version()}, key=lambda v: tuple(int(p) for p in v.split("."))
)
SECRET_DIR = "/var/run/secrets/fboc"
CONFIG_FILE = "/etc/fboc/fboc.yaml"
CRD_KINDS = {"ServiceMonitor", "ScaledObject", "PrometheusRule"}  # tests/deploy/test_alerts.py
EXISTING_SECRET = {
    "secrets.existingSecret": "meta-credentials",
    "secrets.accessTokenKey": "token",
    "secrets.appSecretKey": "secret",
}

# Render cases: (id, values files, --set). "all-on" turns on every option of the chart.
CASES: dict[str, tuple[tuple[Path, ...], dict[str, str]]] = {
    "default": ((), {}),
    "all-on": ((ALL_ON_VALUES,), {}),
    "existing-secret": ((), EXISTING_SECRET),
}


def render(helm: Helm, case: str) -> list[Manifest]:
    values, sets = CASES[case]
    return helm.template(values=values, sets=sets)


def containers(workload: Manifest) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    result: list[dict[str, Any]] = spec["containers"]
    return result


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


# --- lint and render ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", [(), (ALL_ON_VALUES,)], ids=["default", "all-on"])
def test_helm_lint_strict(helm: Helm, values: tuple[Path, ...]) -> None:
    args = ["lint", str(CHART), "--strict"]
    for path in values:
        args += ["--values", str(path)]
    out = helm.run(*args)
    assert "0 chart(s) failed" in out


def test_default_render_has_the_expected_objects(helm: Helm) -> None:
    kinds = sorted(m["kind"] for m in render(helm, "default"))
    assert kinds == ["ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"]


def test_all_on_render_has_every_object_and_no_hpa(helm: Helm) -> None:
    kinds = sorted(m["kind"] for m in render(helm, "all-on"))
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "PrometheusRule",
        "ScaledObject",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


@pytest.mark.parametrize("case", list(CASES))
def test_every_object_has_the_recommended_labels(helm: Helm, case: str) -> None:
    for manifest in render(helm, case):
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "fboc"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"]
        assert labels["helm.sh/chart"] == f"fboc-{CHART_META['version']}"
        assert manifest["metadata"]["namespace"] == NAMESPACE


# --- Kubernetes schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("case", list(CASES))
def test_manifests_validate_against_kubernetes_schemas(helm: Helm, case: str, kube: str) -> None:
    manifests = render(helm, case)
    checked = 0
    for manifest in manifests:
        if manifest["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(manifest, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{manifest['kind']}/{manifest['metadata']['name']} is not valid for "
                f"Kubernetes {kube}: {path}: {exc.message}"
            )
        checked += 1
    assert checked == len([m for m in manifests if m["kind"] not in CRD_KINDS])


SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace", "labels"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["matchLabels"],
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port", "path"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}

SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name", "namespace", "labels"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "kafka"},
                            "metadata": {
                                "type": "object",
                                "required": ["bootstrapServers", "consumerGroup", "topic", "lagThreshold"],
                                # KEDA reads trigger metadata as strings only.
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitor_scrapes_the_metrics_service(helm: Helm) -> None:
    manifests = render(helm, "all-on")
    monitor = one(manifests, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = one(manifests, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_scaled_object_scales_the_deployment_on_consumer_group_lag(helm: Helm) -> None:
    manifests = render(helm, "all-on")
    scaled = one(manifests, "ScaledObject")
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    values = yaml.safe_load(ALL_ON_VALUES.read_text())
    deployment = one(manifests, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    triggers = scaled["spec"]["triggers"]
    topics = [t["metadata"]["topic"] for t in triggers]
    assert topics == [s["topic"] for s in values["config"]["sources"]]
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == values["config"]["kafka"]["group_id"]
        assert meta["bootstrapServers"] == values["keda"]["bootstrapServers"]
        assert meta["lagThreshold"] == str(values["keda"]["lagThreshold"])
        assert meta["tls"] == "enable"
        assert trigger["authenticationRef"] == {"name": "kafka-trigger-auth"}
    # The autoscaler owns the replica count, and KEDA's own HPA is the only one.
    assert "replicas" not in deployment["spec"]
    assert by_kind(manifests, "HorizontalPodAutoscaler") == []


def test_keda_follows_the_consumer_configuration_by_default(helm: Helm) -> None:
    manifests = helm.template(sets={"keda.enabled": "true"})
    jsonschema.validate(one(manifests, "ScaledObject"), SCALED_OBJECT_SCHEMA)
    (trigger,) = one(manifests, "ScaledObject")["spec"]["triggers"]
    config = yaml.safe_load(rendered_config(manifests))
    assert trigger["metadata"]["bootstrapServers"] == config["kafka"]["bootstrap_servers"]
    assert trigger["metadata"]["consumerGroup"] == config["kafka"]["group_id"]
    assert trigger["metadata"]["topic"] == config["sources"][0]["topic"]
    assert trigger["metadata"]["offsetResetPolicy"] == "earliest"


def test_keda_refuses_a_bootstrap_reference_it_cannot_read(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"keda\.bootstrapServers"):
        helm.template(
            sets={"keda.enabled": "true"},
            set_strings={"config.kafka.bootstrap_servers": "${KAFKA_BOOTSTRAP}"},
        )


def test_hpa_only_without_keda(helm: Helm) -> None:
    manifests = helm.template(sets={"autoscaling.enabled": "true"})
    hpa = one(manifests, "HorizontalPodAutoscaler")
    kubernetes_validate.validate(hpa, kubernetes_validate.latest_version(), strict=True)
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(manifests, "Deployment")["metadata"]["name"]
    assert "replicas" not in one(manifests, "Deployment")["spec"]
    with_keda = helm.template(sets={"autoscaling.enabled": "true", "keda.enabled": "true"})
    assert by_kind(with_keda, "HorizontalPodAutoscaler") == []
    assert len(by_kind(with_keda, "ScaledObject")) == 1


def test_pod_disruption_budget_selects_only_consumer_pods(helm: Helm) -> None:
    manifests = render(helm, "all-on")
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    deployment = one(manifests, "Deployment")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    job_labels = pod_labels(one(manifests, "Job"))
    assert not pdb["spec"]["selector"]["matchLabels"].items() <= job_labels.items()
    default_pdb = one(helm.template(sets={"podDisruptionBudget.enabled": "true"}), "PodDisruptionBudget")
    assert default_pdb["spec"]["maxUnavailable"] == 1


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


# --- the Deployment ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_pods_are_hardened(helm: Helm, case: str) -> None:
    manifests = render(helm, case)
    workloads = by_kind(manifests, "Deployment") + by_kind(manifests, "Job")
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize(
    ("sets", "deadline", "grace"),
    [
        ({}, 25, 35),
        ({"config.service.shutdown_deadline_seconds": "60"}, 60, 70),
        ({"terminationGracePeriodSeconds": "26"}, 25, 26),
    ],
    ids=["default", "longer-deadline", "explicit"],
)
def test_termination_grace_is_above_the_shutdown_deadline(
    helm: Helm, sets: dict[str, str], deadline: int, grace: int
) -> None:
    manifests = helm.template(sets=sets)
    config = yaml.safe_load(rendered_config(manifests))
    assert config["service"]["shutdown_deadline_seconds"] == deadline
    assert pod_spec(one(manifests, "Deployment"))["terminationGracePeriodSeconds"] == grace
    assert grace > deadline


def test_a_grace_period_within_the_deadline_is_refused(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"must be above config\.service\.shutdown_deadline_seconds"):
        helm.template(sets={"terminationGracePeriodSeconds": "25"})


@pytest.mark.parametrize("port", [8080, 9102])
def test_probes_ports_and_service_follow_service_port(helm: Helm, port: int) -> None:
    manifests = helm.template(sets={"config.service.port": str(port)})
    (container,) = containers(one(manifests, "Deployment"))
    assert container["args"] == ["run", "--config", CONFIG_FILE]
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = one(manifests, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == one(manifests, "Deployment")["spec"]["selector"]["matchLabels"]
    assert yaml.safe_load(rendered_config(manifests))["service"]["port"] == port


@pytest.mark.parametrize(
    ("sets", "bind"),
    [
        ({}, "0.0.0.0"),
        ({"config.service": "null"}, "0.0.0.0"),  # a values file without the key
        ({"config.service.bind_address": "::"}, "::"),
    ],
)
def test_the_probes_reach_fboc_from_outside_the_pod(helm: Helm, sets: dict[str, str], bind: str) -> None:
    """fboc listens on 127.0.0.1 unless told: the chart always tells it."""
    config = yaml.safe_load(rendered_config(helm.template(sets=sets)))
    assert config["service"]["bind_address"] == bind


def test_configuration_and_secret_are_mounted_read_only(helm: Helm) -> None:
    manifests = render(helm, "default")
    deployment = one(manifests, "Deployment")
    (container,) = containers(deployment)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    config_volume = next(n for n, v in volumes.items() if "configMap" in v)
    secret_volume = next(n for n, v in volumes.items() if "secret" in v)
    assert volumes[config_volume]["configMap"]["name"] == one(manifests, "ConfigMap")["metadata"]["name"]
    assert mounts[config_volume] == {"name": config_volume, "mountPath": "/etc/fboc", "readOnly": True}
    assert volumes[secret_volume]["secret"]["secretName"] == one(manifests, "Secret")["metadata"]["name"]
    assert mounts[secret_volume]["mountPath"] == SECRET_DIR
    assert mounts[secret_volume]["readOnly"] is True
    # The token reaches fboc only as a file: never in the environment or the ConfigMap.
    assert "env" not in container
    assert "access_token: ${file:/var/run/secrets/fboc/access-token}" in rendered_config(manifests)


def test_existing_secret_is_used_instead_of_a_new_one(helm: Helm) -> None:
    manifests = render(helm, "existing-secret")
    assert by_kind(manifests, "Secret") == []
    volumes = pod_spec(one(manifests, "Deployment"))["volumes"]
    assert {"name": "secrets", "secret": {"secretName": "meta-credentials", "defaultMode": 0o440}} in volumes
    (destination,) = yaml.safe_load(rendered_config(manifests))["destinations"]
    assert destination["access_token"] == "${file:/var/run/secrets/fboc/token}"
    assert destination["app_secret"] == "${file:/var/run/secrets/fboc/secret}"
    annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations


def test_app_secret_only_when_there_is_one(helm: Helm) -> None:
    without = helm.template(sets={"secrets.existingSecret": "meta", "secrets.appSecretKey": ""})
    (destination,) = yaml.safe_load(rendered_config(without))["destinations"]
    assert "app_secret" not in destination
    created = helm.template(set_strings={"secrets.accessToken": "t"})
    assert set(one(created, "Secret")["data"]) == {"access-token"}
    both = helm.template(set_strings={"secrets.accessToken": "t", "secrets.appSecret": "s"})
    assert set(one(both, "Secret")["data"]) == {"access-token", "app-secret"}


def test_pods_roll_when_the_configuration_changes(helm: Helm) -> None:
    def checksum(manifests: Sequence[Manifest]) -> str:
        annotations = one(manifests, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    before = checksum(helm.template())
    after = checksum(helm.template(sets={"config.batching.linger_ms": "250"}))
    assert before != after


# --- the replay Job ----------------------------------------------------------------------------


def test_dlq_replay_job_runs_fboc_dlq_replay(helm: Helm) -> None:
    manifests = render(helm, "all-on")
    job = one(manifests, "Job")
    (container,) = containers(job)
    assert container["args"] == [
        "dlq",
        "replay",
        "--config",
        CONFIG_FILE,
        "--reason",
        "graph_retries_exhausted",
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-01-02T00:00:00Z",
        "--event-set",
        "111111111111111",
        "--limit",
        "10000",
        "--rate",
        "200/s",
        "--to",
        "events.track.replay",
        "--dry-run",
    ]
    # the real command line accepts exactly these arguments
    from consumer.ops.cli import parser

    parsed = parser().parse_args(container["args"])
    assert (parsed.reason, parsed.rate, parsed.dry_run) == (["graph_retries_exhausted"], "200/s", True)
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 3
    deployment = one(manifests, "Deployment")
    assert container["volumeMounts"] == containers(deployment)[0]["volumeMounts"]
    assert spec["volumes"] == pod_spec(deployment)["volumes"]
    assert container["image"] == containers(deployment)[0]["image"]
    # Replay pods are not consumers: not selected by the Deployment, the Service or the PDB.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod_labels(job).items()
    assert len(job["metadata"]["name"]) <= 63


def test_dlq_replay_job_is_off_by_default_and_renamed_by_new_arguments(helm: Helm) -> None:
    assert by_kind(helm.template(), "Job") == []
    first = one(helm.template(sets={"dlqReplay.enabled": "true"}), "Job")
    assert containers(first)[0]["args"] == ["dlq", "replay", "--config", CONFIG_FILE]
    same = one(helm.template(sets={"dlqReplay.enabled": "true"}), "Job")
    other = one(helm.template(sets={"dlqReplay.enabled": "true", "dlqReplay.limit": "5"}), "Job")
    rerun = one(helm.template(sets={"dlqReplay.enabled": "true", "dlqReplay.runId": "2"}), "Job")
    names = {j["metadata"]["name"] for j in (first, other, rerun)}
    assert same["metadata"]["name"] == first["metadata"]["name"]
    assert len(names) == 3


# --- values.schema.json ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"replicas": "2"}, "additional properties 'replicas' not allowed"),
        ({"config.kafka.groupId": "x"}, "additional properties 'groupId' not allowed"),
        ({"serviceMonitor.enable": "true"}, "additional properties 'enable' not allowed"),
        ({"config.sources[0].dialect": "snowplow"}, "/config/sources/0/dialect"),
        (
            {"config.destinations[0].default_event_sets[0]": "1234567890123"},
            "/config/destinations/0/default_event_sets/0",
        ),
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"securityContext.readOnlyRootFilesystem": "false"}, "/securityContext/readOnlyRootFilesystem"),
        ({"config.service.port": "70000"}, "/config/service/port"),
    ],
    ids=[
        "unknown-key",
        "unknown-config-key",
        "typo-in-option",
        "bad-dialect",
        "unquoted-event-set-id",
        "wrong-type",
        "insecure",
        "bad-port",
    ],
)
def test_schema_rejects_wrong_values(helm: Helm, sets: dict[str, str], message: str) -> None:
    with pytest.raises(HelmError) as caught:
        helm.template(sets=sets)
    assert "values don't meet the specifications of the schema" in caught.value.stderr
    assert message in caught.value.stderr


def test_schema_is_strict_everywhere() -> None:
    """Every object in values.schema.json that lists properties forbids the others."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                loose.append(path or "/")
            for key, child in node.items():
                walk(child, f"{path}/{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{path}/{index}")

    walk(schema, "")
    assert loose == []


def test_schema_config_section_matches_fboc_settings() -> None:
    """The chart's view of fboc's configuration keys is the consumer's (consumer/config/settings.py)."""
    config_module = pytest.importorskip("consumer.config.settings")
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]

    def keys(model: Any) -> set[str]:
        return {field.alias or name for name, field in model.model_fields.items()}

    settings = config_module.Settings
    assert set(schema["properties"]) == keys(settings)
    for section, field in settings.model_fields.items():
        node = schema["properties"][section]
        model = field.annotation
        if node["type"] == "array":
            node = node["items"]
            model = model.__args__[0]  # tuple[SourceSettings, ...]
        assert set(node["properties"]) == keys(model), section
    breaker = schema["properties"]["dead_letter"]["properties"]["breaker"]
    assert set(breaker["properties"]) == keys(config_module.BreakerSettings)


def test_values_yaml_documents_every_schema_key() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"])
    # The security contexts may take a few optional fields values.yaml leaves out.
    optional_fields = {"config", "podSecurityContext", "securityContext"}
    for key, node in schema["properties"].items():
        if key not in optional_fields and node.get("type") == "object" and "properties" in node:
            assert set(values[key]) == set(node["properties"]), key


# --- fboc check-config on the rendered configuration --------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_rendered_configuration_passes_check_config(
    helm: Helm, case: str, tmp_path: Path, secret_files: Path
) -> None:
    config = rendered_config(render(helm, case))
    assert SECRET_DIR in config
    # The Secret volume's files, as the pod sees them, under the test's own directory.
    if case == "existing-secret":
        (secret_files / "token").write_text("test-access-token\n")
        (secret_files / "secret").write_text("test-app-secret\n")
    path = tmp_path / "fboc.yaml"
    path.write_text(config.replace(SECRET_DIR, str(secret_files)))
    result = check_config(path, {"FB_STORES_ACCESS_TOKEN": "test-stores-token"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")


def test_check_config_needs_the_secret_files(helm: Helm, tmp_path: Path) -> None:
    path = tmp_path / "fboc.yaml"
    path.write_text(rendered_config(render(helm, "default")).replace(SECRET_DIR, str(tmp_path / "none")))
    result = check_config(path)
    assert result.returncode != 0
    assert "destinations[0].access_token" in result.stderr
    assert "test-access-token" not in result.stderr


# --- NOTES.txt ---------------------------------------------------------------------------------


def render_notes(
    helm: Helm, tmp_path: Path, values: Sequence[Path] = (), sets: dict[str, str] | None = None
) -> str:
    """NOTES.txt as `helm install` would print it (helm template skips NOTES)."""
    chart = tmp_path / "fboc"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("ci"))
    (chart / "notes.txt").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n"
        '    {{- tpl (.Files.Get "notes.txt") . | nindent 4 }}\n'
    )
    manifests = helm.template(chart=chart, values=values, sets=sets)
    notes: str = next(m for m in manifests if m["metadata"]["name"] == "notes")["data"]["notes"]
    return notes


def test_notes_render(helm: Helm, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path / "default")
    assert "port-forward svc/fboc-metrics 8080" in notes
    assert "WARNING: no access token" in notes
    all_on = render_notes(helm, tmp_path / "all-on", values=[ALL_ON_VALUES])
    assert "WARNING" not in all_on
    assert "KEDA ScaledObject fboc-prod" in all_on
    assert "autoscaling.enabled is ignored while keda.enabled" in all_on
    assert "Dead-letter replay Job started (dry run)" in all_on
    assert "events.amperity (amperity) -> destination stores" in all_on
