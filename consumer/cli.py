"""The `fboc` command (docs/operations.md#commands)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
from collections.abc import Sequence
from typing import IO, Any

import orjson

from consumer.capi.event import Output, RecordContext, parse_time_ms
from consumer.config import Settings, load_settings, runtime_problems
from consumer.dialects import get_dialect
from consumer.errors import ConfigError, Filtered, RecordOutcome, Rejected


def _load(path: str, *, for_run: bool) -> Settings:
    settings = load_settings(path)
    if for_run:
        problems = runtime_problems(settings)
        if problems:
            raise ConfigError(problems)
    return settings


def _print_problems(exc: ConfigError) -> int:
    for path, message in exc.problems:
        print(f"config error: {path}: {message}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    from consumer.service import serve
    from consumer.telemetry import configure_logging

    settings = _load(args.config, for_run=True)
    configure_logging(settings.service.log_format)
    # What is loaded by now (modules, schemas, pycountry's tables) lives as long as the process:
    # keep it out of the collector's full passes, which would otherwise rescan all of it.
    gc.freeze()
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
        from consumer.checks import connection_problems

        problems = connection_problems(settings)
        if problems:
            raise ConfigError(problems)
    print(f"ok: {len(settings.sources)} source(s), {len(settings.destinations)} destination(s)")
    return 0


def preview_lines(settings: Settings, source_name: str, now_s: int, lines: IO[str]) -> list[bytes]:
    """One JSON line per output (docs/operations.md#commands); pure apart from reading `lines`."""
    source = settings.source(source_name)
    dialect = get_dialect(source.dialect)
    dest = settings.destination(source.destination)
    results: list[tuple[int, list[Output] | RecordOutcome]] = []
    payloads: list[tuple[int, dict[str, Any]]] = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            payload = orjson.loads(line)
        except orjson.JSONDecodeError:
            results.append((index, Rejected("invalid_json", "the line is not JSON")))
            continue
        if not isinstance(payload, dict):
            results.append((index, Rejected("invalid_json", "a line must hold a JSON object")))
            continue
        payloads.append((index, payload))
    if dialect.grouping is not None:  # rows of one order share one event (docs/dialects.md#amperity)
        results += dialect.grouping.preview(payloads, dest, now_s)
    else:
        for index, payload in payloads:
            try:
                results.append((index, dialect.transform(
                    payload, RecordContext(now_s * 1000, payload), dest, now_s)))
            except RecordOutcome as exc:
                results.append((index, exc))
    out: list[bytes] = []
    for index, result in sorted(results, key=lambda item: item[0]):
        if isinstance(result, Filtered):
            out.append(orjson.dumps({"index": index, "filtered": {"reason": result.reason}}))
        elif isinstance(result, RecordOutcome):
            out.append(orjson.dumps({"index": index, "rejected": {
                "reason": result.reason, "message": result.message}}))
        else:
            out.extend(orjson.dumps({"index": index, "event_set_id": o.event_set_id,
                                     "event": o.event}) for o in result)
    return out


def cmd_preview(args: argparse.Namespace) -> int:
    settings = _load(args.config, for_run=False)
    now_ms = parse_time_ms(args.now) if args.now else int(time.time() * 1000)
    if now_ms is None:
        raise ConfigError([("--now", "not an ISO 8601 time")])
    with (sys.stdin if args.input == "-" else open(args.input)) as lines:
        for line in preview_lines(settings, args.source, now_ms // 1000, lines):
            sys.stdout.buffer.write(line + b"\n")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from consumer.sandbox import run_sandbox
    from consumer.sandbox.state import DEFAULT_MAX_STORED_EVENTS
    from consumer.telemetry import configure_logging

    stored = args.max_stored_events
    if stored is None:
        stored = DEFAULT_MAX_STORED_EVENTS
    if stored < 0:
        print("fboc sandbox: --max-stored-events must be 0 or more", file=sys.stderr)
        return 2
    configure_logging("console")
    run_sandbox(args.host, args.port, tokens=args.token or ("sandbox-token",),
                app_secret=args.app_secret, max_stored_events=stored)
    return 0


def cmd_dlq_stats(args: argparse.Namespace) -> int:
    from consumer.dlq_stats import run_stats
    from consumer.telemetry import configure_logging

    settings = _load(args.config, for_run=False)
    configure_logging(settings.service.log_format)
    return run_stats(settings, as_json=args.json)


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from consumer.dlq_command import replay_command
    from consumer.dlq_records import Filters, parse_rate, parse_time_arg
    from consumer.replay import ReplayOptions
    from consumer.telemetry import configure_logging

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
        Filters(frozenset(r for arg in args.reason or () for r in arg.split(",") if r),
                args.event_set, since, until),
        limit=args.limit, rate=rate, dry_run=args.dry_run, to_topic=args.to, group=args.group)
    return replay_command(settings, options, as_json=args.json)


REPLAY_DESCRIPTION = """\
Re-publishes the original key, value, headers and timestamp of dead letters to their original
topic (or --to), with fboc.replay_count + 1 and the other fboc.* headers removed; a record that
failed for one event set gets fboc.target.event_set_id, so fboc sends it to that set only.

Reads the dead-letter topic up to the end offsets seen at start, in the consumer group
<kafka.group_id>.replay (or --group), committing a record only once it is final: re-published
and acknowledged, or skipped / parked / too old (those stay on the dead-letter topic). An
interrupted replay resumes where it stopped. Records not matching --reason/--event-set/--since/
--until are skipped and passed in the group too: a later replay with other filters needs another
--group. --since/--until are times on the dead-letter topic (when a record was dead-lettered).

Parked: replay_count >= dead_letter.max_replays. Too old: the original Kafka timestamp is older
than the destination's window (max_event_age_days within Meta's 7 days, 62 for physical_store).
Exit: 0 done, 1 error, 130 interrupted (SIGINT/SIGTERM; run again to resume)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fboc", description="Offline conversions from Kafka to "
                                "Meta's Conversions API")
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
    preview.add_argument("--now", help="ISO 8601 time to judge event age against")
    preview.add_argument("input", nargs="?", default="-")
    preview.set_defaults(func=cmd_preview)
    dlq = sub.add_parser("dlq", help="dead-letter topic: stats and replay")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    stats = dlq_sub.add_parser("stats", help="count the dead letters (reads, never commits)")
    stats.add_argument("--config", required=True)
    stats.add_argument("--json", action="store_true", help="JSON instead of a table")
    stats.set_defaults(func=cmd_dlq_stats)
    replay = dlq_sub.add_parser(
        "replay", help="re-publish dead letters to their original topic",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=REPLAY_DESCRIPTION)
    replay.add_argument("--config", required=True)
    replay.add_argument("--reason", action="append",
                        help="only this fboc.error.reason (repeatable, or comma-separated)")
    replay.add_argument("--since", help="dead-lettered at or after (ISO 8601 or unix ms)")
    replay.add_argument("--until", help="dead-lettered before (ISO 8601 or unix ms)")
    replay.add_argument("--event-set", help="only records dead-lettered for this event set")
    replay.add_argument("--limit", type=int, help="re-publish at most N records in this run")
    replay.add_argument("--rate", help="at most N re-publishes per second (N or N/s)")
    replay.add_argument("--dry-run", action="store_true",
                        help="count what would be re-published; write and commit nothing")
    replay.add_argument("--to", help="re-publish to this topic instead of the original one")
    replay.add_argument("--group", help="the replay's consumer group "
                                        "(default: <kafka.group_id>.replay)")
    replay.add_argument("--json", action="store_true", help="JSON summary instead of a table")
    replay.set_defaults(func=cmd_dlq_replay)
    sandbox = sub.add_parser("sandbox", help="local Graph API stand-in")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8090)
    sandbox.add_argument("--token", action="append", help="accepted access token (repeatable)")
    sandbox.add_argument("--app-secret", help="require appsecret_proof for this secret")
    sandbox.add_argument("--max-stored-events", type=int, metavar="N",
                         help="keep the latest N accepted events for /_sandbox/events (its "
                         "stats count them all; default 100,000)")
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
