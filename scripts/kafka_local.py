#!/usr/bin/env python3
"""Fetch and run a real single-node Apache Kafka broker (KRaft) without Docker.

The broker jars come from Maven Central (scripts/kafka/pom.xml) and are cached under
~/.cache/fboc/kafka-libs-<version>, so only the first run on a machine downloads anything.

    python scripts/kafka_local.py fetch
    python scripts/kafka_local.py start --port 9092 --dir /tmp/fboc-kafka   # foreground
    python scripts/kafka_local.py start --port 9092 --dir /tmp/fboc-kafka --background

The pytest fixture (tests/kafka_broker.py) and scripts/demo use the functions below.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "kafka" / "pom.xml"
KAFKA_VERSION = re.search(r"<kafka.version>([^<]+)<", POM.read_text()).group(1)  # type: ignore[union-attr]
CACHE = Path(os.environ.get("FBOC_CACHE", Path.home() / ".cache" / "fboc"))
LIBS = CACHE / f"kafka-libs-{KAFKA_VERSION}"

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{cport}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
"""


def fetch() -> Path:
    """Download the broker jars once; return the directory that holds them."""
    marker = LIBS / ".complete"
    if marker.exists():
        return LIBS
    if shutil.which("mvn") is None:
        raise SystemExit("kafka_local: Maven (mvn) is needed to fetch the Kafka jars")
    tmp = LIBS.with_name(LIBS.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ],
        check=True,
    )
    (tmp / ".complete").write_text(KAFKA_VERSION)
    shutil.rmtree(LIBS, ignore_errors=True)
    tmp.rename(LIBS)
    return LIBS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(workdir: Path, port: int, cport: int) -> list[str]:
    """Write server.properties, format the storage, return the java command line."""
    libs = fetch()
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    props = workdir / "server.properties"
    props.write_text(SERVER_PROPERTIES.format(port=port, cport=cport, data=data))
    cp = f"{libs}/*"
    if not (data / "meta.properties").exists():
        cluster_id = subprocess.run(
            ["java", "-cp", cp, "kafka.tools.StorageTool", "random-uuid"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        subprocess.run(
            [
                "java",
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return [
        "java",
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseSerialGC",
        f"-Dkafka.logs.dir={workdir / 'logs'}",
        "-cp",
        cp,
        "kafka.Kafka",
        str(props),
    ]


def wait_ready(bootstrap: str, proc: subprocess.Popen[bytes] | None, timeout: float = 90.0) -> None:
    """Block until the broker answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"kafka exited with code {proc.returncode} while starting")
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception:
            time.sleep(0.5)
    raise TimeoutError(f"kafka at {bootstrap} not ready after {timeout:.0f}s")


def start(workdir: Path, port: int, cport: int, log: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = prepare(workdir, port, cport)
    out = open(log or workdir / "broker.log", "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_ready(f"127.0.0.1:{port}", proc)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="download the Kafka jars into the cache")
    st = sub.add_parser("start", help="start a single-node KRaft broker")
    st.add_argument("--port", type=int, default=9092)
    st.add_argument("--controller-port", type=int, default=0)
    st.add_argument("--dir", type=Path, default=Path(".run/kafka"))
    st.add_argument("--background", action="store_true", help="start, wait until ready, write pid, exit")
    args = parser.parse_args()
    if args.cmd == "fetch":
        print(fetch())
        return
    cport = args.controller_port or free_port()
    if args.background:
        proc = start(args.dir, args.port, cport)
        (args.dir / "broker.pid").write_text(str(proc.pid))
        print(f"kafka {KAFKA_VERSION} ready on 127.0.0.1:{args.port} (pid {proc.pid})")
        return
    cmd = prepare(args.dir, args.port, cport)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
