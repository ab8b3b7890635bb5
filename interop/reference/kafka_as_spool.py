"""Apache Kafka 4.3.1 (KRaft, single node) behind the `spool` command line the interop suite drives.

Used only to check the interop suite itself: every test should pass against real Kafka, so a
failure against spool is spool's. Not run by CI. Start it through ./kafka-as-spool (venv python);
the jars come from Maven Central into .peers/kafka-ref/libs (see run-against-kafka.sh).

Implements:  broker --listen 127.0.0.1:0 --data-dir DIR [--default-partitions N] [--group-initial-rebalance-delay-ms MS]
             topics create NAME --partitions N -b HOST:PORT
             produce TOPIC -b HOST:PORT            (stdin lines -> values)
             consume TOPIC -b HOST:PORT --from-beginning --count N   (values, one a line)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIBS = Path(os.environ.get("KAFKA_REF_LIBS", REPO / ".peers" / "kafka-ref" / "libs"))


def cluster_id() -> str:
    """A random KRaft cluster id. Like Kafka's own Uuid.randomUuid, never one starting with '-',
    which the storage tool's argument parser would take for an option (1 run in 64 failed)."""
    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster.startswith("-"):
            return cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def java(*args: str) -> list[str]:
    return ["java", "-Xmx512m", "-XX:+UseSerialGC", "-cp", f"{LIBS}/*", *args]


def broker(opts: argparse.Namespace) -> int:
    data = Path(opts.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    ports_file = data / "ref-ports.json"
    if ports_file.exists():  # the controller endpoint is recorded at format time: keep ports per data dir
        ports = json.loads(ports_file.read_text())
    else:
        want = int(opts.listen.rsplit(":", 1)[1])
        ports = {"broker": want or free_port(), "controller": free_port()}
        ports_file.write_text(json.dumps(ports))
    props = data / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{ports['controller']}",
                f"listeners=PLAINTEXT://127.0.0.1:{ports['broker']},CONTROLLER://127.0.0.1:{ports['controller']}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{ports['broker']}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data / 'logs'}",
                f"num.partitions={opts.default_partitions}",
                "auto.create.topics.enable=true",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                f"group.initial.rebalance.delay.ms={opts.group_initial_rebalance_delay_ms}",
                # A single node cannot host the share-group state topic's default 3 replicas.
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "",
            ]
        )
    )
    if not (data / "logs" / "meta.properties").exists():
        cluster = cluster_id()
        fmt = subprocess.run(
            java("kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props), "--standalone"),
            capture_output=True,
            text=True,
        )
        sys.stderr.write(fmt.stdout + fmt.stderr)
        if fmt.returncode != 0:
            return fmt.returncode

    proc = subprocess.Popen(java("kafka.Kafka", str(props)), stdin=subprocess.DEVNULL)
    stopping = threading.Event()

    def on_term(signum, frame):
        stopping.set()
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    from confluent_kafka.admin import AdminClient

    bootstrap = f"127.0.0.1:{ports['broker']}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4", "log_level": 0})
    deadline = time.monotonic() + 120
    while proc.poll() is None and not stopping.is_set():
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                print(f"kafka-as-spool: listening on {bootstrap}", file=sys.stderr, flush=True)
                break
        except Exception:  # noqa: BLE001
            pass
        if time.monotonic() > deadline:
            proc.kill()
            return 1
    code = proc.wait()
    if stopping.is_set():
        return 0  # stopped on request: Kafka's shutdown hook ran
    return code or 1


def topics_create(opts: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": opts.bootstrap})
    fut = admin.create_topics([NewTopic(opts.name, num_partitions=opts.partitions, replication_factor=1)])
    fut[opts.name].result(timeout=30)
    return 0


def produce(opts: argparse.Namespace) -> int:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": opts.bootstrap, "acks": "all"})
    for line in sys.stdin:
        p.produce(opts.topic, value=line.rstrip("\n").encode())
        p.poll(0)
    return 1 if p.flush(30) else 0


def consume(opts: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": opts.bootstrap, "group.id": "kafka-as-spool", "enable.auto.commit": False})
    md = c.list_topics(opts.topic, timeout=10)
    c.assign([TopicPartition(opts.topic, p, OFFSET_BEGINNING) for p in md.topics[opts.topic].partitions])
    n = 0
    deadline = time.monotonic() + 30
    while n < opts.count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        print(m.value().decode())
        n += 1
    c.close()
    return 0 if n == opts.count else 1


def main() -> int:
    ap = argparse.ArgumentParser(prog="kafka-as-spool")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("broker")
    b.add_argument("--listen", required=True)
    b.add_argument("--data-dir", required=True)
    b.add_argument("--default-partitions", type=int, default=1)
    b.add_argument("--group-initial-rebalance-delay-ms", type=int, default=0)
    t = sub.add_parser("topics")
    tsub = t.add_subparsers(dest="tcmd", required=True)
    tc = tsub.add_parser("create")
    tc.add_argument("name")
    tc.add_argument("--partitions", type=int, default=1)
    tc.add_argument("-b", dest="bootstrap", required=True)
    p = sub.add_parser("produce")
    p.add_argument("topic")
    p.add_argument("-b", dest="bootstrap", required=True)
    c = sub.add_parser("consume")
    c.add_argument("topic")
    c.add_argument("-b", dest="bootstrap", required=True)
    c.add_argument("--from-beginning", action="store_true")
    c.add_argument("--count", type=int, required=True)
    opts = ap.parse_args()
    if opts.cmd == "broker":
        return broker(opts)
    if opts.cmd == "topics":
        return topics_create(opts)
    if opts.cmd == "produce":
        return produce(opts)
    return consume(opts)


if __name__ == "__main__":
    sys.exit(main())
