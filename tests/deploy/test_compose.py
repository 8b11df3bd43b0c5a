"""docker-compose.yml: Docker cannot run here, so check that the file parses and that its services,
ports, topics and the sample configuration (deploy/compose/fboc.yaml) agree with each other."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import shlex
import time
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.conftest import REPO, check_config

COMPOSE_FILE = REPO / "docker-compose.yml"
SAMPLE_CONFIG = REPO / "deploy" / "compose" / "fboc.yaml"
SAMPLE_EVENTS = REPO / "deploy" / "compose" / "sample-events.jsonl"
PRODUCER_SCRIPT = REPO / "deploy" / "compose" / "produce_samples.py"
SERVICES = {"kafka", "schema-registry", "sandbox", "producer", "fboc"}
FBOC_IMAGE_SERVICES = {"sandbox", "producer", "fboc"}

# Keys of the Compose specification's service definition that this file may use.
SERVICE_KEYS = {
    "image",
    "build",
    "hostname",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "volumes",
    "depends_on",
    "healthcheck",
    "restart",
    "read_only",
    "tmpfs",
    "cap_drop",
    "security_opt",
    "stop_grace_period",
}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def sample_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SAMPLE_CONFIG.read_text())
    return data


def args(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def option(argv: list[str], name: str) -> str:
    index = argv.index(name)
    return argv[index + 1]


def published(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port, from the short "HOST:CONTAINER" syntax."""
    mapping = {}
    for entry in service.get("ports", []):
        host, container = str(entry).rsplit(":", 1)
        mapping[int(container)] = int(host)
    return mapping


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path of the bind mounts."""
    result = {}
    for entry in service.get("volumes", []):
        host, container, *_ = str(entry).split(":")
        assert host.startswith("./"), f"bind mounts are relative to the repository: {entry}"
        result[container] = REPO / host
    return result


def host_file(service: dict[str, Any], container_path: str) -> Path:
    """The host file a container path comes from, through the service's bind mounts."""
    for container, host in sorted(mounts(service).items(), key=lambda item: -len(item[0])):
        if container_path == container:
            return host
        if container_path.startswith(container.rstrip("/") + "/"):
            return host / container_path[len(container.rstrip("/")) + 1 :]
    raise AssertionError(f"{container_path} is not mounted into the service")


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", text):
        total += float(number) * units[unit]
    return total


def kafka_listeners(env: dict[str, Any], key: str) -> dict[str, tuple[str, int]]:
    """ "NAME://host:port,..." -> {NAME: (host, port)}."""
    result = {}
    for item in str(env[key]).split(","):
        name, address = item.split("://")
        host, port = address.rsplit(":", 1)
        result[name] = (host, int(port))
    return result


# --- the file itself ---------------------------------------------------------------------------


def test_compose_file_parses_with_the_expected_services() -> None:
    data = compose()
    assert data["name"] == "fboc"
    assert set(data["services"]) == SERVICES
    for name, service in data["services"].items():
        unknown = set(service) - SERVICE_KEYS
        assert not unknown, f"{name}: unknown keys {unknown}"


def test_images_are_pinned_and_fboc_services_share_one_build() -> None:
    for name, service in services().items():
        image = service["image"]
        assert ":" in image, f"{name}: unpinned image {image}"
        assert not image.endswith(":latest"), f"{name}: unpinned image {image}"
        if name in FBOC_IMAGE_SERVICES:
            assert service["image"] == "fboc:local"
            assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}
            assert (REPO / service["build"]["dockerfile"]).is_file()
    assert services()["kafka"]["image"].startswith("apache/kafka:")
    assert services()["schema-registry"]["image"].startswith("confluentinc/cp-schema-registry:")


def test_dependencies_exist_and_wait_for_health() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            target = all_services[dependency]
            if condition == "service_healthy":
                assert "test" in target["healthcheck"], f"{dependency} has no healthcheck"
            else:
                assert condition == "service_completed_successfully"
                assert target.get("restart") == "no"
    assert set(all_services["fboc"]["depends_on"]) == SERVICES - {"fboc"}


def test_bind_mounts_exist() -> None:
    for name, service in services().items():
        for container, host in mounts(service).items():
            assert host.exists(), f"{name}: {host} (for {container}) does not exist"


# --- agreement between the services and the configuration --------------------------------------


def test_kafka_listeners_agree_with_the_configuration() -> None:
    kafka = services()["kafka"]
    env = kafka["environment"]
    listeners = kafka_listeners(env, "KAFKA_LISTENERS")
    advertised = kafka_listeners(env, "KAFKA_ADVERTISED_LISTENERS")
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) == set(protocols)
    assert set(advertised) <= set(listeners)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners
    assert controller not in advertised
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    # KRaft: this node votes on its controller listener.
    voter = f"{env['KAFKA_NODE_ID']}@{kafka['hostname']}:{listeners[controller][1]}"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voter
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    # fboc and the registry reach the broker on its inter-broker listener, as advertised.
    host, port = advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert host == kafka["hostname"]
    assert sample_config()["kafka"]["bootstrap_servers"] == f"{host}:{port}"
    registry_env = services()["schema-registry"]["environment"]
    assert registry_env["SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS"] == f"PLAINTEXT://{host}:{port}"
    # The host's listener is published on the port it advertises.
    external = [n for n, (h, _) in advertised.items() if h == "localhost"]
    for name in external:
        assert published(kafka)[listeners[name][1]] == advertised[name][1]
    for setting in ("OFFSETS_TOPIC", "TRANSACTION_STATE_LOG", "SHARE_COORDINATOR_STATE_TOPIC"):
        assert env[f"KAFKA_{setting}_REPLICATION_FACTOR"] == 1


def test_schema_registry_agrees_with_the_configuration() -> None:
    registry = services()["schema-registry"]
    url = urlsplit(sample_config()["kafka"]["schema_registry_url"])
    assert url.hostname == "schema-registry" == registry["hostname"]
    listener = urlsplit(registry["environment"]["SCHEMA_REGISTRY_LISTENERS"])
    assert listener.port == url.port
    assert published(registry)[url.port] == url.port
    assert str(url.port) in " ".join(registry["healthcheck"]["test"])


def test_sandbox_agrees_with_the_configuration() -> None:
    sandbox = services()["sandbox"]
    argv = args(sandbox["command"])
    assert argv[0] == "sandbox"
    assert option(argv, "--host") == "0.0.0.0"
    graph = urlsplit(sample_config()["facebook"]["graph_url"])
    assert graph.hostname == "sandbox"
    assert int(option(argv, "--port")) == graph.port
    assert published(sandbox)[graph.port] == graph.port
    health = args(sandbox["healthcheck"]["test"])
    assert int(option(health, "--port")) == graph.port
    # fboc's token is one the sandbox accepts.
    assert services()["fboc"]["environment"]["FB_ACCESS_TOKEN"] == option(argv, "--token")
    assert sample_config()["destinations"][0]["access_token"] == "${FB_ACCESS_TOKEN}"


def test_fboc_service_agrees_with_the_configuration() -> None:
    fboc = services()["fboc"]
    config = sample_config()
    argv = args(fboc["command"])
    assert argv[:2] == ["run", "--config"]
    assert host_file(fboc, option(argv, "--config")) == SAMPLE_CONFIG
    port = config["service"]["port"]
    assert published(fboc) == {port: port}
    # a published port needs fboc to listen beyond the container's loopback (its default)
    assert config["service"]["bind_address"] == "0.0.0.0"
    # SIGTERM drains within shutdown_deadline_seconds; compose's SIGKILL must come later.
    assert duration_seconds(fboc["stop_grace_period"]) > config["service"]["shutdown_deadline_seconds"]
    assert fboc["read_only"] is True
    assert fboc["tmpfs"] == ["/tmp"]
    assert fboc["cap_drop"] == ["ALL"]


def test_producer_agrees_with_the_configuration() -> None:
    producer = services()["producer"]
    entrypoint = args(producer["entrypoint"])
    assert entrypoint[0] == "python"
    assert host_file(producer, entrypoint[1]) == PRODUCER_SCRIPT
    argv = args(producer["command"])
    assert host_file(producer, option(argv, "--config")) == SAMPLE_CONFIG
    assert host_file(producer, option(argv, "--events")) == SAMPLE_EVENTS
    assert option(argv, "--source") in {s["name"] for s in sample_config()["sources"]}
    # The schema comes from the image: /app/schemas is the repository's schemas/.
    schema = option(argv, "--schema")
    assert schema.startswith("/app/schemas/")
    assert (REPO / "schemas" / schema.removeprefix("/app/schemas/")).is_file()
    assert producer["healthcheck"] == {"disable": True}


def test_sample_configuration_passes_check_config() -> None:
    env = {k: str(v) for k, v in services()["fboc"]["environment"].items()}
    result = check_config(SAMPLE_CONFIG, env)
    assert result.returncode == 0, result.stderr
    without_token = check_config(SAMPLE_CONFIG)
    assert without_token.returncode != 0
    assert "destinations[0].access_token" in without_token.stderr


# --- the producer and its sample events --------------------------------------------------------


def load_producer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("produce_samples", PRODUCER_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_events_encode_and_flow_through_fboc() -> None:
    """What the producer writes decodes in fboc and ends as expected: all delivered except the one
    with a bad currency (dead-lettered on purpose, to show the dead-letter topic)."""
    codec = pytest.importorskip("consumer.adapters.codec")
    cli = pytest.importorskip("consumer.ops.cli")
    config_module = pytest.importorskip("consumer.config.settings")
    from confluent_kafka.schema_registry import SchemaRegistryClient

    producer = load_producer()
    config = sample_config()
    kafka, topic = producer.source_settings(config, "web")
    assert kafka["schema_registry_url"] == config["kafka"]["schema_registry_url"]
    now = time.time()
    events = producer.with_timestamps(producer.load_events(SAMPLE_EVENTS), now)
    schema = codec.AvroSchema.from_file(REPO / "schemas" / "segment_track.avsc")
    registry = SchemaRegistryClient.new_client({"url": "mock://"})
    schema_id = producer.register(registry, f"{topic}-value", schema)
    values = producer.encode(events, schema, schema_id)

    # fboc's own reader of the Confluent wire format, against the same (in-memory) registry.
    decoder = codec.RegistryDecoder.with_client(registry)
    decoded = [decoder(value) for value in values]
    assert decoded[3]["properties"] == events[3]["properties"]
    assert [d["timestamp"] for d in decoded] == sorted(d["timestamp"] for d in decoded)

    settings = config_module.load_settings(SAMPLE_CONFIG, env={"FB_ACCESS_TOKEN": "t"})
    assert settings.sources[0].topic == topic
    lines = io.StringIO("".join(json.dumps(d) + "\n" for d in decoded))
    outputs = [json.loads(line) for line in cli.preview_lines(settings, "web", int(now), lines)]
    rejected = {o["index"]: o["rejected"]["reason"] for o in outputs if "rejected" in o}
    assert rejected == {len(events) - 1: "invalid_currency"}
    delivered = {o["index"] for o in outputs if "event" in o}
    assert delivered == set(range(len(events) - 1))
    names = {o["event"]["event_name"] for o in outputs if "event" in o}
    assert {"ViewContent", "AddToCart", "InitiateCheckout", "Purchase", "Lead"} <= names
