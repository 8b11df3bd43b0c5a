"""The chart's PrometheusRule: rendered by a real helm, checked and unit-tested by a real promtool.

tests/deploy/prometheus/alerts-test.yaml holds the promtool unit tests (input series that make each
alert fire, and series that must not); this module renders the rules it runs against.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy.conftest import (
    ALL_ON_VALUES,
    NAMESPACE,
    REPO,
    Helm,
    Manifest,
    Promtool,
    by_kind,
    one,
)

pytestmark = pytest.mark.timeout(1800)  # the first test may wait for helm and promtool builds

ALERTS_TEST = Path(__file__).parent / "prometheus" / "alerts-test.yaml"
ALERTS = [
    "FbocConsumerLagGrowing",
    "FbocNoCommits",
    "FbocDestinationHalted",
    "FbocDeadLetterRatioHigh",
    "FbocPodRestarting",
    "FbocGraphErrorRatioHigh",
    "FbocRequestsNearInFlightLimit",
]
RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name", "namespace", "labels"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr", "labels", "annotations"],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d|w|y)$"},
                                        "labels": {
                                            "type": "object",
                                            "required": ["severity"],
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "required": ["summary", "description"],
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def rule_manifest(
    helm: Helm,
    sets: dict[str, str] | None = None,
    values: tuple[Path, ...] = (),
    set_strings: dict[str, str] | None = None,
) -> Manifest:
    return one(
        helm.template(
            values=values, sets={"prometheusRule.enabled": "true", **(sets or {})}, set_strings=set_strings
        ),
        "PrometheusRule",
    )


def rules(manifest: Manifest) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for group in manifest["spec"]["groups"] for rule in group["rules"]}


def write_rules(manifest: Manifest, path: Path, *, annotations: bool = True) -> Path:
    """The PrometheusRule's spec is a Prometheus rules file as it stands."""
    spec = manifest["spec"]
    if not annotations:  # promtool's unit tests compare annotations too; these test the logic
        spec = {
            "groups": [
                {**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
                for g in spec["groups"]
            ]
        }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_off_by_default(helm: Helm) -> None:
    assert by_kind(helm.template(), "PrometheusRule") == []


@pytest.mark.parametrize("values", [(), (ALL_ON_VALUES,)], ids=["default", "all-on"])
def test_rendered_rules_pass_promtool_check(
    helm: Helm, promtool: Promtool, tmp_path: Path, values: tuple[Path, ...]
) -> None:
    manifest = rule_manifest(helm, values=values)
    jsonschema.validate(manifest, RULE_SCHEMA)
    assert list(rules(manifest)) == ALERTS
    proc = promtool.run("check", "rules", str(write_rules(manifest, tmp_path / "rules.yaml")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout


def test_promtool_unit_tests_fire_and_hold_each_alert(helm: Helm, promtool: Promtool, tmp_path: Path) -> None:
    write_rules(rule_manifest(helm), tmp_path / "rules.yaml", annotations=False)
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    tested = {case["alertname"] for group in tests["tests"] for case in group["alert_rule_test"]}
    assert tested == set(ALERTS)
    for alert in ALERTS:  # each alert is expected both to fire and to stay quiet
        expectations = [
            bool(case["exp_alerts"])
            for group in tests["tests"]
            for case in group["alert_rule_test"]
            if case["alertname"] == alert
        ]
        assert set(expectations) == {True, False}, alert
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    proc = promtool.run("test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_a_changed_threshold_changes_the_verdict(helm: Helm, promtool: Promtool, tmp_path: Path) -> None:
    """The unit tests run against the values: with a dead-letter threshold of 50 %, the 9 % of
    the firing case no longer fires, and promtool says so."""
    values = tmp_path / "values.yaml"  # --set would make 0.5 a string
    values.write_text("prometheusRule: {deadLetterRatio: {threshold: 0.5}}\n")
    manifest = rule_manifest(helm, values=(values,))
    assert rules(manifest)["FbocDeadLetterRatioHigh"]["expr"].rstrip().endswith("> 0.5")
    write_rules(manifest, tmp_path / "rules.yaml", annotations=False)
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    proc = promtool.run("test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert proc.returncode != 0
    assert "FbocDeadLetterRatioHigh" in proc.stdout + proc.stderr


def test_thresholds_and_labels_come_from_values(helm: Helm) -> None:
    manifest = rule_manifest(helm, values=(ALL_ON_VALUES,))
    by_name = rules(manifest)
    assert manifest["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert manifest["metadata"]["namespace"] == NAMESPACE
    # fullnameOverride fboc-prod: the metrics Service, so the scrape job, is fboc-prod-metrics
    assert f'namespace="{NAMESPACE}", job="fboc-prod-metrics"' in by_name["FbocNoCommits"]["expr"]
    assert "> 5000" in by_name["FbocConsumerLagGrowing"]["expr"]
    assert by_name["FbocConsumerLagGrowing"]["for"] == "20m"
    assert "[15m]" in by_name["FbocNoCommits"]["expr"]
    assert by_name["FbocDestinationHalted"]["for"] == "2m"
    assert by_name["FbocDeadLetterRatioHigh"]["expr"].rstrip().endswith("> 0.1")
    assert ">= 3" in by_name["FbocPodRestarting"]["expr"]
    assert 'pod=~"fboc-prod-[a-z0-9]+-[a-z0-9]+"' in by_name["FbocPodRestarting"]["expr"]
    assert by_name["FbocGraphErrorRatioHigh"]["expr"].rstrip().endswith("> 0.02")
    # all-on sets batching.max_in_flight 8 and ratio 0.8
    assert by_name["FbocRequestsNearInFlightLimit"]["expr"].rstrip().endswith(">= 6.4")
    for rule in by_name.values():
        assert rule["labels"]["team"] == "growth"
        assert rule["annotations"]["runbook_url"].startswith(
            "https://git.example.com/fboc/blob/main/README.md#fboc"
        )


def test_in_flight_bound_follows_the_configuration(helm: Helm) -> None:
    def expr(sets: dict[str, str]) -> str:
        text: str = rules(rule_manifest(helm, sets))["FbocRequestsNearInFlightLimit"]["expr"]
        return text.rstrip()

    assert expr({}).endswith(">= 7.2")  # fboc's default bound, 8
    assert expr({"config.batching.max_in_flight": "20"}).endswith(">= 18")
    assert expr(
        {"config.batching.max_in_flight": "20", "prometheusRule.inFlightSaturated.limit": "4"}
    ).endswith(">= 3.6")


def test_an_alert_can_be_turned_off_and_the_selector_replaced(helm: Helm) -> None:
    manifest = rule_manifest(
        helm,
        sets={"prometheusRule.podRestarts.enabled": "false", "prometheusRule.selector": 'service="fboc"'},
    )
    by_name = rules(manifest)
    assert "FbocPodRestarting" not in by_name
    assert 'fboc_commits_total{service="fboc"}' in by_name["FbocNoCommits"]["expr"]


def test_every_alert_has_a_runbook_section_in_the_readme(helm: Helm) -> None:
    readme = (REPO / "README.md").read_text()
    anchors = {_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", readme, re.M)}
    manifest = rule_manifest(helm, sets={"prometheusRule.runbookUrl": "https://x/README.md"})
    for alert, rule in rules(manifest).items():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"{alert}: README has no section #{anchor}"
        assert f"`{alert}`" in readme


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_free_text_values_stay_strings(helm: Helm) -> None:
    """A URL or severity with YAML syntax in it is quoted, never parsed as YAML."""
    url = "https://wiki.example.com/a: b/{fboc} #notes"
    manifest = rule_manifest(
        helm,
        set_strings={
            "prometheusRule.runbookUrl": url,
            "prometheusRule.destinationHalted.severity": "page: now",
        },
    )
    rule = rules(manifest)["FbocDestinationHalted"]
    assert rule["annotations"]["runbook_url"] == url + "#fbocdestinationhalted"
    assert rule["labels"]["severity"] == "page: now"
