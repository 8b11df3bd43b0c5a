"""The Grafana dashboard: its ConfigMap, its queries (parsed by a real promtool), and the metrics
it names (exported by a real `fboc run` against the real broker and `fboc sandbox`)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import kafka_local  # scripts/: tests/kafka_broker.py (which tests/conftest.py loads) puts it on sys.path
import kubernetes_validate
import pytest
import yaml

from consumer.sandbox import SandboxThread
from tests.deploy.conftest import CHART, NAMESPACE, REPO, Helm, Promtool, by_kind
from tests.fboc_process import FbocProcess
from tests.helpers import avro, config_for, create_topic, produce, sandbox_post, track, wait_until
from tests.kafka_broker import Broker

pytestmark = pytest.mark.timeout(1800)  # the first test may wait for helm and promtool builds

DASHBOARD = CHART / "dashboards" / "fboc.json"
SELECTOR = 'namespace="$namespace", job="$release-metrics"'
METRIC = re.compile(r"\b(fboc_[a-z_]+)\b")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_file_is_what_the_script_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "grafana_dashboard", REPO / "scripts" / "grafana_dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run scripts/grafana_dashboard.py"


def test_every_query_selects_one_namespace_and_release() -> None:
    names = [v["name"] for v in dashboard()["templating"]["list"]]
    assert names == ["datasource", "namespace", "release"]
    assert len(targets()) >= 20
    for title, expr in targets():
        for match in METRIC.finditer(expr):
            assert expr[match.end() :].startswith("{" + SELECTOR), f"{title}: {match.group(1)}"


def test_panels_cover_what_an_operator_needs() -> None:
    exprs = " ".join(expr for _title, expr in targets())
    for metric in (
        "fboc_records_consumed_total",
        "fboc_events_sent_total",
        "fboc_record_outcomes_total",
        "fboc_consumer_lag_records",
        "fboc_graph_request_seconds_bucket",
        "fboc_graph_errors_total",
        "fboc_requests_in_flight",
        "fboc_buffered_records",
        "fboc_destination_halted",
        "fboc_dead_letter_writes_total",
        "fboc_match_key_events_total",
        "fboc_match_keys_per_event_bucket",
    ):
        assert metric in exprs, metric
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_parses(promtool: Promtool, tmp_path: Path) -> None:
    """promtool has no "parse this expression": each query becomes a recording rule instead."""
    rules = []
    for i, (title, expr) in enumerate(targets()):
        concrete = (
            expr.replace("$__rate_interval", "5m")
            .replace("$namespace", NAMESPACE)
            .replace("$release", "fboc")
        )
        assert "$" not in concrete, title
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = promtool.run("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
    # and a broken one would not pass
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "d",
                        "rules": [{"record": "dashboard:broken", "expr": "sum by (topic (rate(x[5m]))"}],
                    }
                ]
            }
        )
    )
    assert promtool.run("check", "rules", str(path)).returncode != 0


def test_configmap_is_off_by_default_and_carries_the_sidecar_label(helm: Helm) -> None:
    assert [m for m in by_kind(helm.template(), "ConfigMap") if "fboc.json" in m["data"]] == []
    manifests = helm.template(sets={"dashboard.enabled": "true"})
    (config_map,) = [m for m in by_kind(manifests, "ConfigMap") if "fboc.json" in m["data"]]
    kubernetes_validate.validate(config_map, kubernetes_validate.latest_version(), strict=True)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["name"] == "fboc-dashboard"
    assert json.loads(config_map["data"]["fboc.json"]) == dashboard()


def test_configmap_namespace_labels_and_annotations_follow_values(helm: Helm) -> None:
    manifests = helm.template(
        sets={
            "dashboard.enabled": "true",
            "dashboard.namespace": "monitoring",
            "dashboard.labels.grafana_dashboard": "null",
            "dashboard.labels.dashboards": "fboc",
            "dashboard.annotations.grafana_folder": "Conversions",
        }
    )
    (config_map,) = [m for m in by_kind(manifests, "ConfigMap") if "fboc.json" in m["data"]]
    meta = config_map["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["dashboards"] == "fboc"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["annotations"] == {"grafana_folder": "Conversions"}
    no_labels = helm.template(
        sets={"dashboard.enabled": "true", "dashboard.labels.grafana_dashboard": "null"}
    )
    (config_map,) = [m for m in by_kind(no_labels, "ConfigMap") if "fboc.json" in m["data"]]
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]


# --- the metrics it names exist ------------------------------------------------------------------


def scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text: str = resp.read().decode()
            return text
    except OSError:  # not listening yet
        return ""


def sample_names(text: str) -> set[str]:
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and m.group(1) == name and labels.items() <= dict(LABEL.findall(m.group(2) or "")).items():
            total += float(m.group(3))
    return total


@pytest.mark.kafka
async def test_every_metric_named_is_exported_by_fboc_run(
    kafka: Broker, new_topic: Any, group_id: str, sandbox: SandboxThread, tmp_path: Path, helm: Helm
) -> None:
    """One real run that does a bit of everything: deliveries, a token error that halts and
    resumes the destination, a 500 that is retried, a dead letter, a dropped phone number."""
    topic = new_topic(2)
    create_topic(kafka.bootstrap, f"{topic}.dlq", 1)
    port = kafka_local.free_port()
    config = config_for(
        kafka.bootstrap,
        topic,
        group_id,
        sandbox.url,
        facebook={"graph_url": sandbox.url, "timeout_seconds": 5, "auth_retry_seconds": 0.5},
        service={"port": port, "shutdown_deadline_seconds": 10, "commit_interval_ms": 100},
    )
    bad_phone = track(99)
    bad_phone["context"]["traits"]["phone"] = "12"
    records = [(f"k{i}".encode(), avro(track(i)), i % 2) for i in range(20)]
    records += [(b"bad-phone", avro(bad_phone), 0), (b"empty", b"", 1)]
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"error": {"code": 190}}, "times": 1})
    sandbox_post(sandbox.url, "/_sandbox/faults", {"action": {"http_status": 500}, "times": 1})
    produce(kafka.bootstrap, topic, records)
    fboc = FbocProcess(tmp_path, config).start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:

        def done() -> bool:
            text = scrape(url)
            return (
                sample(text, "fboc_record_outcomes_total", outcome="delivered") == 21
                and sample(text, "fboc_record_outcomes_total", outcome="dead_lettered") == 1
                and "fboc_consumer_lag_records{" in text
            )

        await wait_until(done, 90, "every record final and the lag reported")
        text = await asyncio.to_thread(scrape, url)
        assert fboc.terminate() == 0
    finally:
        fboc.stop_quietly()
    exported = sample_names(text)
    named = {m for _title, expr in targets() for m in METRIC.findall(expr)}
    named |= {
        m for v in dashboard()["templating"]["list"] for m in METRIC.findall(json.dumps(v.get("query", "")))
    }
    rule = by_kind(helm.template(sets={"prometheusRule.enabled": "true"}), "PrometheusRule")[0]
    in_rules = set(METRIC.findall(json.dumps(rule["spec"])))
    assert named - exported == set()
    assert in_rules - exported == set()
    # the run did what it was meant to: each of these has a sample because it happened
    assert sample(text, "fboc_destination_halted", destination="main") == 0  # halted, resumed
    assert sample(text, "fboc_graph_errors_total", destination="main", code="190") == 1
    assert sample(text, "fboc_graph_retries_total", destination="main", kind="transient") == 1
    assert sample(text, "fboc_normalization_dropped_total", key="ph") >= 1
    assert sample(text, "fboc_dead_letter_writes_total", stage="decode", reason="empty_value") == 1
    main_111 = {"destination": "main", "event_set_id": "111"}
    assert sample(text, "fboc_match_key_events_total", key="em", **main_111) == 21
    assert sample(text, "fboc_match_key_events_total", key="ph", **main_111) == 20
    assert sample(text, "fboc_match_keys_per_event_count", **main_111) == 21
