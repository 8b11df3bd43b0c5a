"""The `fboc` command (docs/operations.md#commands)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import orjson

from consumer.config.settings import DestinationSettings, Settings, load_settings
from consumer.core.capi.event import Output, RecordContext, parse_time_ms
from consumer.core.dialects import Dialect, get_dialect
from consumer.errors import ConfigError, Filtered, RecordOutcome, Rejected
from consumer.ops.checks import runtime_problems


def _load(path: str, *, for_run: bool) -> Settings:
    settings = load_settings(path)
    if for_run:
        problems = runtime_problems(settings)
        if problems:
            raise ConfigError(problems)
    return settings


def _printable(text: str) -> str:
    """One line whatever a key or a message holds (a YAML key may be "\\r")."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _print_problems(exc: ConfigError) -> int:
    for path, message in exc.problems:
        print(f"config error: {_printable(path)}: {_printable(message)}", file=sys.stderr)
    return 2


# Python's default is (700, 10, 10). fboc's records in flight (up to batching.max_buffered_records,
# a few objects each) live for a delivery's round trip, so at the default the collector scans
# them again at every promotion, ~5% of the loop's CPU (bench/README.md, "The collector"). Few of
# fboc's objects form cycles, so collecting less often costs next to no memory.
COLLECTOR_THRESHOLDS = (50_000, 20, 100)


def prepare_collector() -> None:
    """The garbage collector as `fboc run` serves with it. What is loaded by now (modules,
    schemas, pycountry's tables) lives as long as the process: frozen, the collector's full
    passes do not rescan it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def cmd_run(args: argparse.Namespace) -> int:
    from consumer.runtime.service import serve
    from consumer.telemetry.metrics import configure_logging

    settings = _load(args.config, for_run=True)
    configure_logging(settings.service.log_format)
    prepare_collector()
    code = asyncio.run(serve(settings))
    if code != 0:
        # a broker that vanished can leave librdkafka's close blocked on the poll thread:
        # do not let interpreter exit wait for it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args.config, for_run=True)
    if args.connect:
        from consumer.ops.checks import connection_problems

        problems = connection_problems(settings)
        if problems:
            raise ConfigError(problems)
    from consumer.ops.checks import config_warnings

    for path, message in config_warnings(settings, date.today()):
        print(f"config warning: {path}: {message}", file=sys.stderr)
    print(f"ok: {len(settings.sources)} source(s), {len(settings.destinations)} destination(s)")
    return 0


Result = list[Output] | RecordOutcome
# `--now` must fall in this range (unix ms): beyond it the age checks mean nothing
PREVIEW_NOW_RANGE_MS = (946_684_800_000, 4_102_444_800_000)  # 2000-01-01 .. 2100-01-01 UTC


def _unexpected(exc: Exception) -> Rejected:
    """A dialect bug, named by its exception type only: its message may quote the record."""
    return Rejected("transform_error", f"unexpected {type(exc).__name__}")


def _preview_grouped(
    dialect: Dialect, payloads: list[tuple[int, dict[str, Any]]], dest: DestinationSettings, now_s: int
) -> list[tuple[int, Result]]:
    """A grouping dialect's preview; a row that breaks it is found alone and reported alone."""
    assert dialect.grouping is not None
    try:
        return dialect.grouping.preview(payloads, dest, now_s)
    except Exception:  # one bad row must not cost the others: try each row alone
        failed: list[tuple[int, Result]] = []
        good: list[tuple[int, dict[str, Any]]] = []
        for item in payloads:
            try:
                dialect.grouping.preview([item], dest, now_s)
                good.append(item)
            except Exception as exc:
                failed.append((item[0], _unexpected(exc)))
    try:
        return failed + dialect.grouping.preview(good, dest, now_s)
    except Exception as exc:  # only the rows together fail: each of them says so
        return failed + [(index, _unexpected(exc)) for index, _ in good]


def _render(index: int, result: Result) -> list[bytes]:
    if isinstance(result, Filtered):
        return [orjson.dumps({"index": index, "filtered": {"reason": result.reason}})]
    if isinstance(result, RecordOutcome):
        return [
            orjson.dumps({"index": index, "rejected": {"reason": result.reason, "message": result.message}})
        ]
    try:
        return [
            orjson.dumps({"index": index, "event_set_id": o.event_set_id, "event": o.event}) for o in result
        ]
    except orjson.JSONEncodeError:
        return _render(index, Rejected("invalid_payload", "the event is not encodable as JSON"))


def preview_lines(
    settings: Settings, source_name: str, now_s: int, lines: Iterable[bytes | str]
) -> list[bytes]:
    """One JSON line per output (docs/operations.md#commands); pure apart from reading `lines`. Every input
    line that is not blank gets at least one output line, whatever it holds."""
    source = settings.source(source_name)
    dialect = get_dialect(source.dialect)
    dest = settings.destination(source.destination)
    results: list[tuple[int, Result]] = []
    payloads: list[tuple[int, dict[str, Any]]] = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            payload = orjson.loads(line)
        except orjson.JSONDecodeError:  # also bytes that are not UTF-8, and nesting over 1024
            results.append((index, Rejected("invalid_json", "the line is not JSON")))
            continue
        if not isinstance(payload, dict):
            results.append((index, Rejected("invalid_json", "a line must hold a JSON object")))
            continue
        payloads.append((index, payload))
    if dialect.grouping is not None:  # rows of one order share one event (docs/dialects.md#amperity)
        results += _preview_grouped(dialect, payloads, dest, now_s)
    else:
        for index, payload in payloads:
            try:
                results.append(
                    (index, dialect.transform(payload, RecordContext(now_s * 1000, payload), dest, now_s))
                )
            except RecordOutcome as exc:
                results.append((index, exc))
            except Exception as exc:  # one bad line must not cost the others
                results.append((index, _unexpected(exc)))
    out: list[bytes] = []
    for index, result in sorted(results, key=lambda item: item[0]):
        out.extend(_render(index, result))
    return out


def _preview_now_ms(text: str | None) -> int | None:
    """`--now` as unix ms (now when absent); None when it is not a time in the sane range."""
    if text is None:
        return int(time.time() * 1000)
    try:
        ms = parse_time_ms(text)
    except (ValueError, OverflowError):
        return None
    low, high = PREVIEW_NOW_RANGE_MS
    return ms if ms is not None and low <= ms < high else None


def cmd_preview(args: argparse.Namespace) -> int:
    from consumer.telemetry.metrics import configure_logging

    now_ms = _preview_now_ms(args.now)
    if now_ms is None:
        print(
            f"fboc preview: --now: not an ISO 8601 time (or unix s/ms) between 2000 and 2100: "
            f"{args.now[:40]!r}",
            file=sys.stderr,
        )
        return 2
    settings = _load(args.config, for_run=False)
    configure_logging(settings.service.log_format)  # stderr: stdout carries only the JSON lines
    try:
        lines = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"fboc preview: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    with lines:
        for line in preview_lines(settings, args.source, now_ms // 1000, lines):
            sys.stdout.buffer.write(line + b"\n")
    return 0


def cmd_preview_summary(args: argparse.Namespace) -> int:
    """`fboc preview --summary`: the match keys of the previewed events, per event set."""
    from consumer.telemetry.match_quality import dropped_counts, preview_summary
    from consumer.telemetry.metrics import METRICS, configure_logging

    settings = _load(args.config, for_run=False)
    configure_logging("console", logging.WARNING)  # to stderr: stdout is the table
    now_ms = parse_time_ms(args.now) if args.now else int(time.time() * 1000)
    if now_ms is None:
        raise ConfigError([("--now", "not an ISO 8601 time")])
    dest = settings.destination(settings.source(args.source).destination)
    before = dropped_counts(METRICS.registry)
    with sys.stdin if args.input == "-" else open(args.input) as lines:
        out = preview_lines(settings, args.source, now_ms // 1000, lines)
    after = dropped_counts(METRICS.registry)
    dropped = {key: after[key] - before[key] for key in after}
    for line in preview_summary(out, dest.name, dropped, dest.hashing):
        print(line)
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from consumer.sandbox import run_sandbox
    from consumer.sandbox.state import DEFAULT_MAX_STORED_EVENTS
    from consumer.telemetry.metrics import configure_logging

    stored = args.max_stored_events
    if stored is None:
        stored = DEFAULT_MAX_STORED_EVENTS
    if stored < 0:
        print("fboc sandbox: --max-stored-events must be 0 or more", file=sys.stderr)
        return 2
    configure_logging("console")
    run_sandbox(
        args.host,
        args.port,
        tokens=args.token or ("sandbox-token",),
        app_secret=args.app_secret,
        max_stored_events=stored,
    )
    return 0


def cmd_dlq_stats(args: argparse.Namespace) -> int:
    from consumer.ops.dlq.stats import run_stats
    from consumer.telemetry.metrics import configure_logging

    settings = _load(args.config, for_run=False)
    configure_logging(settings.service.log_format)
    return run_stats(settings, as_json=args.json)


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from consumer.ops.dlq.command import replay_command
    from consumer.ops.dlq.records import Filters, parse_rate, parse_time_arg
    from consumer.ops.dlq.replay import ReplayOptions
    from consumer.telemetry.metrics import configure_logging

    problems: list[tuple[str, str]] = []

    def checked(flag: str, parse: Any, text: str | None) -> Any:
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            problems.append((flag, str(exc)))
            return None

    since = checked("--since", parse_time_arg, args.since)
    until = checked("--until", parse_time_arg, args.until)
    rate = checked("--rate", parse_rate, args.rate)
    if since is not None and until is not None and since >= until:
        problems.append(("--until", "must be later than --since"))
    if args.limit is not None and args.limit < 1:
        problems.append(("--limit", "must be at least 1"))
    if problems:
        raise ConfigError(problems)
    settings = _load(args.config, for_run=False)
    configure_logging(settings.service.log_format)
    options = ReplayOptions(
        Filters(
            frozenset(r for arg in args.reason or () for r in arg.split(",") if r),
            args.event_set,
            since,
            until,
        ),
        limit=args.limit,
        rate=rate,
        dry_run=args.dry_run,
        to_topic=args.to,
        group=args.group,
    )
    return replay_command(settings, options, as_json=args.json)


REPLAY_DESCRIPTION = """\
Re-publishes the original key, value, headers and timestamp of dead letters to their original
topic (or --to), with fboc.replay_count + 1 and the other fboc.* headers removed; a record that
failed for one event set gets fboc.target.event_set_id, so fboc sends it to that set only.
Without --to, only to a configured source topic: others are skipped (not_a_source_topic).

Reads the dead-letter topic up to the end offsets seen at start, in the consumer group
<kafka.group_id>.replay (or --group), committing a record only once it is final: re-published
and acknowledged, or skipped / parked / too old (those stay on the dead-letter topic). An
interrupted replay resumes where it stopped, up to the end offsets of the run it resumes (stored
with its commits): dead letters written since wait for the next run. Records not matching
--reason/--event-set/--since/--until are skipped and passed in the group too: a later replay
with other filters needs another --group. --since/--until are times on the dead-letter topic
(when a record was dead-lettered), from 1970 to 2100.

Parked: replay_count >= dead_letter.max_replays. Too old: the original Kafka timestamp is older
than the destination's window (max_event_age_days within Meta's 7 days, 62 for physical_store).
Exit: 0 done, 1 error, 130 interrupted (SIGINT/SIGTERM; run again to resume)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fboc", description="Offline conversions from Kafka to Meta's Conversions API"
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the consumer service")
    run.add_argument("--config", required=True)
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check-config", help="validate the file and the environment")
    check.add_argument("--config", required=True)
    check.add_argument("--connect", action="store_true", help="also reach Kafka and the registry")
    check.set_defaults(func=cmd_check_config)
    preview = sub.add_parser("preview", help="JSON lines in a source's dialect → CAPI events")
    preview.add_argument("--config", required=True)
    preview.add_argument("--source", required=True)
    preview.add_argument(
        "--now", help="ISO 8601 time to judge event age against (unix s/ms too; 2000 to 2100)"
    )
    preview.add_argument("input", nargs="?", default="-")
    # Swaps the command run (args.func) for the summary: cmd_preview itself is left alone.
    preview.add_argument(
        "--summary",
        dest="func",
        action="store_const",
        const=cmd_preview_summary,
        help="print the share of events carrying each match key, per event set",
    )
    preview.set_defaults(func=cmd_preview)
    dlq = sub.add_parser("dlq", help="dead-letter topic: stats and replay")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    stats = dlq_sub.add_parser("stats", help="count the dead letters (reads, never commits)")
    stats.add_argument("--config", required=True)
    stats.add_argument("--json", action="store_true", help="JSON instead of a table")
    stats.set_defaults(func=cmd_dlq_stats)
    replay = dlq_sub.add_parser(
        "replay",
        help="re-publish dead letters to their original topic",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=REPLAY_DESCRIPTION,
    )
    replay.add_argument("--config", required=True)
    replay.add_argument(
        "--reason", action="append", help="only this fboc.error.reason (repeatable, or comma-separated)"
    )
    replay.add_argument("--since", help="dead-lettered at or after (ISO 8601 or unix ms)")
    replay.add_argument("--until", help="dead-lettered before (ISO 8601 or unix ms)")
    replay.add_argument("--event-set", help="only records dead-lettered for this event set")
    replay.add_argument("--limit", type=int, help="re-publish at most N records in this run")
    replay.add_argument("--rate", help="at most N re-publishes per second (N or N/s)")
    replay.add_argument(
        "--dry-run", action="store_true", help="count what would be re-published; write and commit nothing"
    )
    replay.add_argument("--to", help="re-publish to this topic instead of the original one")
    replay.add_argument("--group", help="the replay's consumer group (default: <kafka.group_id>.replay)")
    replay.add_argument("--json", action="store_true", help="JSON summary instead of a table")
    replay.set_defaults(func=cmd_dlq_replay)
    sandbox = sub.add_parser("sandbox", help="local Graph API stand-in")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8090)
    sandbox.add_argument("--token", action="append", help="accepted access token (repeatable)")
    sandbox.add_argument("--app-secret", help="require appsecret_proof for this secret")
    sandbox.add_argument(
        "--max-stored-events",
        type=int,
        metavar="N",
        help="keep the latest N accepted events for /_sandbox/events (its "
        "stats count them all; default 100,000)",
    )
    sandbox.set_defaults(func=cmd_sandbox)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        return _print_problems(exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
