"""Writes helm/fboc/dashboards/fboc.json, the Grafana dashboard the chart ships.

    .venv/bin/python scripts/grafana_dashboard.py          # rewrite the file
    .venv/bin/python scripts/grafana_dashboard.py --check  # exit 1 when the file is out of date

The panels are listed here as data so that the JSON stays consistent (ids, grid positions,
datasource references); tests/deploy/test_dashboard.py checks the file matches this script, that
every expression parses (promtool) and that every fboc_* metric named is exported by `fboc run`.
Queries select one release with {namespace="$namespace", job="$release-metrics"}: the Prometheus
Operator names the scrape job after the chart's metrics Service, `<release full name>-metrics`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "helm" / "fboc" / "dashboards" / "fboc.json"
SEL = 'namespace="$namespace", job="$release-metrics"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
WIDTH = 24

# (title, unit, [(expr, legend)], width, description)
Panel = tuple[str, str, list[tuple[str, str]], int, str]
LAG = f"max without (pod, instance) (fboc_consumer_lag_records{{{SEL}}})"
SHARE = (
    f"sum by (destination, event_set_id, key) (rate(fboc_match_key_events_total{{{SEL}}}"
    f"[{RATE}])) / on (destination, event_set_id) group_left() sum by (destination, "
    f"event_set_id) (rate(fboc_match_keys_per_event_count{{{SEL}}}[{RATE}]))"
)

ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Throughput",
        [
            (
                "Records consumed by topic",
                "rps",
                [
                    (f"sum by (topic) (rate(fboc_records_consumed_total{{{SEL}}}[{RATE}]))", "{{topic}}"),
                ],
                8,
                "Kafka records read, per second.",
            ),
            (
                "Events sent by event set",
                "rps",
                [
                    (
                        f"sum by (destination, event_set_id) (rate(fboc_events_sent_total{{{SEL}}}[{RATE}]))",
                        "{{destination}} / {{event_set_id}}",
                    ),
                ],
                8,
                "Events Meta acknowledged, per second.",
            ),
            (
                "Outcomes by reason",
                "rps",
                [
                    (
                        f"sum by (outcome, reason) (rate(fboc_record_outcomes_total{{{SEL}}}[{RATE}]))",
                        "{{outcome}}: {{reason}}",
                    ),
                ],
                8,
                "Final outcome of each record: delivered, filtered or dead_lettered, by reason.",
            ),
        ],
    ),
    (
        "Dead letters",
        [
            (
                "Dead-letter writes by reason",
                "rps",
                [
                    (
                        f"sum by (stage, reason) (rate(fboc_dead_letter_writes_total{{{SEL}}}[{RATE}]))",
                        "{{stage}}: {{reason}}",
                    ),
                ],
                12,
                "`fboc dlq stats` counts what is on the topic; `fboc dlq replay` re-publishes.",
            ),
            (
                "Dead-letter ratio",
                "percentunit",
                [
                    (
                        f'sum(rate(fboc_record_outcomes_total{{{SEL}, outcome="dead_lettered"}}[{RATE}])) / '
                        f"sum(rate(fboc_record_outcomes_total{{{SEL}}}[{RATE}]))",
                        "dead-lettered",
                    ),
                ],
                12,
                "Share of final outcomes that were dead letters (the FbocDeadLetterRatioHigh alert).",
            ),
        ],
    ),
    (
        "Kafka",
        [
            (
                "Consumer lag by topic",
                "short",
                [
                    (f"sum by (topic) ({LAG})", "{{topic}}"),
                ],
                8,
                "Records behind the log end (librdkafka's statistics).",
            ),
            (
                "Commits",
                "ops",
                [
                    (f"sum(rate(fboc_commits_total{{{SEL}}}[{RATE}]))", "commits"),
                ],
                8,
                "Offset commits per second; none while lag > 0 means a stuck record.",
            ),
            (
                "Buffered records and paused partitions",
                "short",
                [
                    (f"sum by (pod) (fboc_buffered_records{{{SEL}}})", "buffered {{pod}}"),
                    (f"sum by (pod) (fboc_paused_partitions{{{SEL}}})", "paused {{pod}}"),
                ],
                8,
                "Records consumed whose outcome is not final, and partitions paused by "
                "backpressure (batching.max_buffered_records).",
            ),
            (
                "Record latency, poll to final outcome",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(fboc_record_ack_seconds_bucket{{{SEL}}}"
                        f"[{RATE}])))",
                        "p50",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (le) (rate(fboc_record_ack_seconds_bucket{{{SEL}}}"
                        f"[{RATE}])))",
                        "p99",
                    ),
                ],
                12,
                "",
            ),
            (
                "Events per request",
                "short",
                [
                    (
                        f"histogram_quantile(0.5, sum by (le) (rate(fboc_batch_events_bucket{{{SEL}}}"
                        f"[{RATE}])))",
                        "p50",
                    ),
                    (
                        f"sum(rate(fboc_batch_events_sum{{{SEL}}}[{RATE}])) / "
                        f"sum(rate(fboc_batch_events_count{{{SEL}}}[{RATE}]))",
                        "mean",
                    ),
                ],
                12,
                "",
            ),
        ],
    ),
    (
        "Graph API",
        [
            (
                "Request latency by destination",
                "s",
                [
                    (
                        f"histogram_quantile(0.5, sum by (destination, le) (rate("
                        f"fboc_graph_request_seconds_bucket{{{SEL}}}[{RATE}])))",
                        "p50 {{destination}}",
                    ),
                    (
                        f"histogram_quantile(0.99, sum by (destination, le) (rate("
                        f"fboc_graph_request_seconds_bucket{{{SEL}}}[{RATE}])))",
                        "p99 {{destination}}",
                    ),
                ],
                8,
                "",
            ),
            (
                "Errors by code",
                "rps",
                [
                    (
                        f"sum by (destination, code) (rate(fboc_graph_errors_total{{{SEL}}}[{RATE}]))",
                        "{{destination}} code {{code}}",
                    ),
                    (
                        f"sum by (destination, kind) (rate(fboc_graph_retries_total{{{SEL}}}[{RATE}]))",
                        "retry {{destination}} {{kind}}",
                    ),
                ],
                8,
                "Graph API error responses by Meta's error code (HTTP status when there is none), "
                "and retries by kind.",
            ),
            (
                "Error ratio",
                "percentunit",
                [
                    (
                        f"sum by (destination) (rate(fboc_graph_errors_total{{{SEL}}}[{RATE}])) / sum by "
                        f"(destination) (rate(fboc_graph_request_seconds_count{{{SEL}}}[{RATE}]))",
                        "{{destination}}",
                    ),
                ],
                8,
                "Error responses per request (the FbocGraphErrorRatioHigh alert).",
            ),
            (
                "Requests in flight",
                "short",
                [
                    (
                        f"max by (pod, destination) (fboc_requests_in_flight{{{SEL}}})",
                        "{{pod}} {{destination}}",
                    ),
                ],
                12,
                "Per pod and destination; bounded by batching.max_in_flight.",
            ),
            (
                "Halted destinations",
                "short",
                [
                    (f"max by (destination) (fboc_destination_halted{{{SEL}}})", "{{destination}}"),
                ],
                12,
                "1 while a destination is stopped by a token error (fboc retries it; "
                "`fboc check-config --connect` checks the token).",
            ),
        ],
    ),
    (
        "Match quality",
        [
            (
                "Share of events with each key",
                "percentunit",
                [
                    (SHARE, "{{event_set_id}} {{key}}"),
                ],
                12,
                "Events batched for sending that carried the key, after normalisation. Meta's "
                "Event Match Quality weighs em, ph, external_id, fbp/fbc and client IP + user "
                "agent most; this is a local count, not Meta's score.",
            ),
            (
                "Keys per event (median)",
                "short",
                [
                    (
                        f"histogram_quantile(0.5, sum by (destination, event_set_id, le) (rate("
                        f"fboc_match_keys_per_event_bucket{{{SEL}}}[{RATE}])))",
                        "{{destination}} / {{event_set_id}}",
                    ),
                ],
                6,
                "",
            ),
            (
                "Fields dropped by normalisation",
                "rps",
                [
                    (f"sum by (key) (rate(fboc_normalization_dropped_total{{{SEL}}}[{RATE}]))", "{{key}}"),
                ],
                6,
                "Values that could not be normalised (a bad email, phone, date...): dropped.",
            ),
        ],
    ),
]


def _panel(panel_id: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    title, unit, queries, width, description = panel
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [
            {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + i)}
            for i, (expr, legend) in enumerate(queries)
        ],
    }


def _variable(name: str, label: str, query: str, regex: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": name},
        "regex": regex,
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "current": {},
        "options": [],
        "hide": 0,
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row_title, row in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        for panel in row:
            if x + panel[3] > WIDTH:
                x, y = 0, y + 8
            panels.append(_panel(next_id, panel, x, y))
            next_id += 1
            x += panel[3]
        y += 8
    return {
        "id": None,
        "uid": "fboc",
        "title": "fboc",
        "tags": ["fboc", "kafka", "meta-capi"],
        "description": "fboc: Kafka to Meta's Conversions API (one release per view)",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                },
                _variable("namespace", "Namespace", "label_values(fboc_records_consumed_total, namespace)"),
                _variable(
                    "release",
                    "Release",
                    'label_values(fboc_records_consumed_total{namespace="$namespace"}, job)',
                    regex="/^(.*)-metrics$/",
                ),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run scripts/grafana_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
