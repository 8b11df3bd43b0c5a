"""`fboc dlq replay` as a command: signals, the progress bar (stderr, only on a terminal), the
summary (a table, or JSON with `--json`) and the exit code."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import orjson
from confluent_kafka import KafkaException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from consumer.config.settings import Settings
from consumer.ops.dlq.records import ReplaySummary, Verdict
from consumer.ops.dlq.replay import Replayer, ReplayOptions
from consumer.ops.dlq.stats import DlqError

EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM / SIGINT end the run cleanly: acknowledged re-publishes are committed."""
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, lambda _s, _f: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def render_summary(summary: ReplaySummary, console: Console) -> None:
    dry = summary.dry_run
    replayed = "would replay" if dry else "replayed"
    table = Table(
        title=("DRY RUN (nothing re-published, nothing committed): " if dry else "")
        + f"replay of {summary.topic} (group {summary.group}) to "
        + (summary.to_topic or "the original topics")
    )
    table.add_column("reason")
    for name in (replayed, "parked", "too old"):
        table.add_column(name, justify="right")
    for reason, counts in sorted(summary.by_reason.items()):
        table.add_row(
            reason, *(str(counts[v.value]) for v in (Verdict.REPLAY, Verdict.PARKED, Verdict.TOO_OLD))
        )
    console.print(table)
    c = summary.counts
    why = ", ".join(f"{name} {n}" for name, n in sorted(summary.skipped_by.items()))
    console.print(
        f"{replayed} {c[Verdict.REPLAY.value]}, parked {c[Verdict.PARKED.value]}, "
        f"too old {c[Verdict.TOO_OLD.value]}, skipped {c[Verdict.SKIPPED.value]}"
        + (f" ({why})" if why else ""),
        highlight=False,
    )
    if summary.resumed:
        console.print(
            "resumed an interrupted replay: stopped at the end offsets it saw; run "
            "again for dead letters written since",
            highlight=False,
        )
    if summary.error:
        console.print(
            f"error: {summary.error}\nthe group's position covers only finished records: "
            "fix the cause and run again to resume",
            highlight=False,
        )
    elif summary.interrupted:
        console.print("interrupted: run the same command again to resume", highlight=False)
    elif summary.limit_reached:
        console.print("stopped at --limit: run again to continue", highlight=False)


def replay_command(settings: Settings, options: ReplayOptions, *, as_json: bool) -> int:
    stop = threading.Event()
    err = Console(stderr=True)
    progress = Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )
    task = progress.add_task("replay", total=None)
    try:
        with _stop_on_signals(stop), progress:
            summary = Replayer(
                settings,
                options,
                stop,
                on_start=lambda total: progress.update(task, total=total),
                on_progress=lambda n: progress.advance(task, n),
            ).run()
    except (DlqError, KafkaException) as exc:
        print(f"dlq replay: {exc}", file=sys.stderr)
        return 1
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(summary.to_json()) + b"\n")
        sys.stdout.flush()
    else:
        render_summary(summary, Console(soft_wrap=False))
    if summary.error:
        return 1
    return EXIT_INTERRUPTED if summary.interrupted else 0
