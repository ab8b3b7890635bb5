"""Apache Kafka 4.3.1's own command-line tools against spool broker.

Each tool runs the way bin/kafka-*.sh runs it (`java -cp 'libs/*' <main class>`, main classes as in Kafka 4.3's
bin/*.sh) from the Maven jars in $SPOOL_PEERS_DIR/kafka-ref/libs (installed by interop/peers/java/install.sh).
Every JVM start costs about a second of CPU, so each test starts only the tools its checks need; setup that is
not what a test checks (creating a topic, producing records with chosen timestamps, waiting for a committed offset)
goes through the suite's confluent-kafka helpers instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import matrix
import pytest
from interop_helpers import (
    CLIENT_TIMEOUT,
    REPO,
    HarnessError,
    Produced,
    admin_client,
    create_topic,
    describe,
    new_producer,
    produce_all,
    run,
    unique,
    wait_until,
)

PEERS = Path(os.environ.get("SPOOL_PEERS_DIR", REPO / ".peers"))
LIBS = PEERS / "kafka-ref" / "libs"
TOOLS = "Kafka CLI tools"

# The class each bin/kafka-*.sh script of Kafka 4.3 runs (exec kafka-run-class.sh <class> "$@").
MAIN_CLASS = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-verifiable-producer": "org.apache.kafka.tools.VerifiableProducer",
    "kafka-verifiable-consumer": "org.apache.kafka.tools.VerifiableConsumer",
}
JAVA = [
    "java",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
TOOL_TIMEOUT = 60


def tool_cmd(tool: str, *args: str) -> list[str]:
    return [*JAVA, "-cp", f"{LIBS}/*", MAIN_CLASS[tool], *args]


@pytest.fixture(scope="session")
def kafka_tools() -> None:
    """Checks the jars are installed and records the tools' own version (kafka-topics --version)."""
    if not (LIBS / "kafka-tools-4.3.1.jar").exists():
        raise HarnessError(f"Kafka's jars are not in {LIBS}: run interop/install-peers.sh")
    proc = run(tool_cmd("kafka-topics", "--version"), timeout=TOOL_TIMEOUT)
    version = proc.stdout.decode().strip().split()[0] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not version:
        raise HarnessError(f"kafka-topics --version failed\n{describe(proc)}")
    matrix.set_version(TOOLS, version)


def tool(tool_name: str, bootstrap: str, *args: str, input: bytes | None = None, ok: bool = True) -> str:
    """Runs one tool to completion; with ok=True it must exit 0 and log no ERROR. Returns stdout."""
    proc = run(tool_cmd(tool_name, "--bootstrap-server", bootstrap, *args), input=input, timeout=TOOL_TIMEOUT)
    if ok:
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode == 0 and "ERROR" not in err and "Exception" not in err, describe(proc)
    return proc.stdout.decode(errors="replace")


def table(out: str) -> list[dict[str, str]]:
    """Rows of the tables kafka-consumer-groups prints (header line starting with GROUP), as dicts by column."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in out.splitlines():
        words = line.split()
        if not words:
            header = None
        elif words[0] == "GROUP":
            header = words
        elif header is not None:
            assert len(words) == len(header), f"cannot split row {line!r} into columns {header}:\n{out}"
            rows.append(dict(zip(header, words, strict=True)))
    return rows


def state_row(out: str) -> dict[str, str]:
    """The one row of `--describe --state`: its COORDINATOR (ID) column has a space inside, so split from the right."""
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("GROUP ")]
    assert len(lines) == 1, f"expected one group row:\n{out}"
    words = lines[0].split()
    return {"GROUP": words[0], "ASSIGNMENT-STRATEGY": words[-3], "STATE": words[-2], "#MEMBERS": words[-1]}


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets as the broker reports them (confluent-kafka, to check what a tool did)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    admin = admin_client(bootstrap)  # must outlive the future: a collected AdminClient never completes it
    req = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])]
    res = admin.list_consumer_group_offsets(req, request_timeout=CLIENT_TIMEOUT)[group]
    return {tp.partition: tp.offset for tp in res.result(timeout=CLIENT_TIMEOUT).topic_partitions}


def group_state(bootstrap: str, group: str) -> str:
    admin = admin_client(bootstrap)
    desc = admin.describe_consumer_groups([group], request_timeout=CLIENT_TIMEOUT)[group]
    return desc.result(timeout=CLIENT_TIMEOUT).state.name


def produce(bootstrap: str, topic: str, records: list[Produced], partition: int | None = None) -> None:
    producer = new_producer(bootstrap)
    if partition is None:
        produce_all(producer, topic, records)
        return
    for r in records:  # produce_all has no partition argument: send to the chosen partition directly
        producer.produce(
            topic, key=r.key, value=r.value, partition=partition, timestamp=r.timestamp or 0, on_delivery=r.on_delivery
        )
    assert producer.flush(CLIENT_TIMEOUT) == 0, "producer.flush left records undelivered"
    assert all(r.error is None and r.offset is not None for r in records), records


# --------------------------------------------------------------------------------------------------------------------
# Long-running tools (console consumer in a group, verifiable consumers): output read line by line in the background
# --------------------------------------------------------------------------------------------------------------------


class Background:
    """A tool running in the background; its stdout lines are collected as they come, stderr goes to a file."""

    def __init__(self, tmp_path: Path, name: str, cmd: list[str]):
        self.name = name
        self.err_path = tmp_path / f"{name}.stderr"
        self._err = open(self.err_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def events(self) -> list[dict]:
        """The JSON events a verifiable tool printed so far."""
        return [json.loads(ln) for ln in self.snapshot() if ln.startswith("{")]

    def report(self) -> str:
        err = self.err_path.read_text(errors="replace")[-3000:] if self.err_path.exists() else ""
        out = "\n".join(self.snapshot()[-40:])
        return f"[{self.name}] exit {self.proc.poll()}\n--- stdout (tail) ---\n{out}\n--- stderr (tail) ---\n{err}"

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (the tools' shutdown hooks close their clients, leaving the group), then wait for the exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                message = f"{self.name} did not exit within {timeout}s of SIGTERM\n{self.report()}"
                raise AssertionError(message) from None
        self._reader.join(timeout=10)
        self._err.close()
        return self.proc.returncode


@pytest.fixture
def background(tmp_path: Path):
    """Starts tools in the background; whatever still runs at the end of the test is stopped."""
    started: list[Background] = []

    def start(name: str, cmd: list[str]) -> Background:
        b = Background(tmp_path, name, cmd)
        started.append(b)
        return b

    yield start
    for b in started:
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait(timeout=10)
        b._err.close()


def ended_cleanly(b: Background) -> None:
    code = b.stop()
    # 143 = terminated by SIGTERM after the shutdown hooks ran (the JVM's usual exit for a signal).
    assert code in (0, 143), f"{b.name} exited with {code}\n{b.report()}"


# --------------------------------------------------------------------------------------------------------------------
# kafka-topics
# --------------------------------------------------------------------------------------------------------------------


def listed_topics(bootstrap: str) -> list[str]:
    return tool("kafka-topics", bootstrap, "--list").split()


def described_partitions(out: str, topic: str) -> list[int]:
    parts = []
    for line in out.splitlines():
        fields = dict(f.split(": ", 1) for f in line.strip().split("\t") if ": " in f)
        if fields.get("Topic") == topic and "Partition" in fields:
            assert fields.get("Leader") not in (None, "none", "-1"), f"partition without leader: {line!r}"
            parts.append(int(fields["Partition"]))
    return parts


@pytest.mark.matrix(TOOLS, "admin-topics")
def test_kafka_topics(kafka_tools, bootstrap):
    topic = unique("cli-adm")
    out = tool(
        "kafka-topics", bootstrap, "--create", "--topic", topic, "--partitions", "2", "--config", "retention.ms=3600000"
    )
    assert f"Created topic {topic}." in out, out
    assert topic in listed_topics(bootstrap)

    out = tool("kafka-topics", bootstrap, "--describe", "--topic", topic)
    assert "PartitionCount: 2" in out and "retention.ms=3600000" in out, out
    assert described_partitions(out, topic) == [0, 1], out

    again = run(
        tool_cmd("kafka-topics", "--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", "2"),
        timeout=TOOL_TIMEOUT,
    )
    assert again.returncode != 0 and f"Topic '{topic}' already exists" in again.stdout.decode(), describe(again)

    tool("kafka-topics", bootstrap, "--alter", "--topic", topic, "--partitions", "4")
    out = wait_until(
        f"kafka-topics --describe to show {topic} with 4 partitions",
        lambda: (
            (o := tool("kafka-topics", bootstrap, "--describe", "--topic", topic))
            and described_partitions(o, topic) == [0, 1, 2, 3]
            and o
        ),
    )
    assert "PartitionCount: 4" in out, out

    tool("kafka-topics", bootstrap, "--delete", "--topic", topic)
    wait_until(f"kafka-topics --list to drop {topic}", lambda: topic not in listed_topics(bootstrap))
    # The tool turns the broker's UNKNOWN_TOPIC_OR_PARTITION into "does not exist" and exit 1.
    gone = run(tool_cmd("kafka-topics", "--bootstrap-server", bootstrap, "--describe", "--topic", topic),
               timeout=TOOL_TIMEOUT)
    said = (gone.stdout + gone.stderr).decode(errors="replace")
    assert gone.returncode == 1 and f"Topic '{topic}' does not exist" in said, describe(gone)


# --------------------------------------------------------------------------------------------------------------------
# kafka-console-producer / kafka-console-consumer
# --------------------------------------------------------------------------------------------------------------------

# Formatter settings that make every field of a record visible and unambiguous ("|" occurs in no test data).
PRINT_ALL = [
    "--formatter-property",
    "print.partition=true",
    "--formatter-property",
    "print.offset=true",
    "--formatter-property",
    "print.key=true",
    "--formatter-property",
    "key.separator=|",
    "--formatter-property",
    "null.literal=<null>",
]


def console_produce(bootstrap: str, topic: str, lines: list[str], *args: str) -> None:
    # The tool's default request timeout (1.5 s) is too short for a loaded CI machine.
    tool(
        "kafka-console-producer",
        bootstrap,
        "--topic",
        topic,
        "--request-timeout-ms",
        "15000",
        *args,
        input="".join(f"{ln}\n" for ln in lines).encode(),
    )


def console_consume(bootstrap: str, topic: str, count: int, *args: str) -> list[list[str]]:
    """Reads `count` records (the tool stops there, or fails after 30 s without a record); fields split on '|'."""
    out = tool(
        "kafka-console-consumer",
        bootstrap,
        "--topic",
        topic,
        "--max-messages",
        str(count),
        "--timeout-ms",
        "30000",
        *PRINT_ALL,
        *args,
    )
    rows = [ln.split("|") for ln in out.splitlines() if ln]
    assert len(rows) == count, f"expected {count} records, got {len(rows)}:\n{out}"
    return rows


@pytest.mark.matrix(TOOLS, "produce-codecs")
def test_console_producer_codecs(kafka_tools, bootstrap):
    topic = unique("cli-codecs")
    create_topic(bootstrap, topic, 1)
    for codec in CODECS:
        lines = [f"k-{codec}-{i}:v-{codec}-{i}" for i in range(20)]
        console_produce(
            bootstrap,
            topic,
            lines,
            "--compression-codec",
            codec,
            "--reader-property",
            "parse.key=true",
            "--reader-property",
            "key.separator=:",
        )
    rows = console_consume(bootstrap, topic, 100, "--partition", "0", "--offset", "earliest")
    want = [
        ["Partition:0", f"Offset:{n}", f"k-{CODECS[n // 20]}-{n % 20}", f"v-{CODECS[n // 20]}-{n % 20}"]
        for n in range(100)
    ]
    assert rows == want


@pytest.mark.matrix(TOOLS, "produce-headers-nulls")
def test_console_producer_headers_nulls(kafka_tools, bootstrap):
    topic = unique("cli-hdr")
    create_topic(bootstrap, topic, 1)
    # "HEADERS<TAB>KEY<TAB>VALUE"; a field equal to null.marker is sent as null (a headers field: no headers).
    lines = [
        "h1:x,h2:y,h1:z\ta\t1",
        "<null>\tb\t<null>",
        "<null>\t<null>\t3",
        "<null>\td\t",
        "e:<null>\te\t5",
    ]
    console_produce(
        bootstrap,
        topic,
        lines,
        "--reader-property",
        "parse.key=true",
        "--reader-property",
        "parse.headers=true",
        "--reader-property",
        "null.marker=<null>",
    )
    rows = console_consume(bootstrap, topic, 5, "--from-beginning", "--formatter-property", "print.headers=true")
    assert rows == [
        ["Partition:0", "Offset:0", "h1:x,h2:y,h1:z", "a", "1"],
        ["Partition:0", "Offset:1", "NO_HEADERS", "b", "<null>"],
        ["Partition:0", "Offset:2", "NO_HEADERS", "<null>", "3"],
        ["Partition:0", "Offset:3", "NO_HEADERS", "d", ""],
        ["Partition:0", "Offset:4", "e:<null>", "e", "5"],
    ]


def get_offset(bootstrap: str, topic: str, time_spec: int) -> int | None:
    """kafka-get-offsets for partition 0: the offset it prints, or None when it prints none for the partition."""
    out = tool("kafka-get-offsets", bootstrap, "--topic", topic, "--partitions", "0", "--time", str(time_spec))
    found = [ln.rsplit(":", 1)[1] for ln in out.splitlines() if ln.startswith(f"{topic}:0:")]
    assert len(found) <= 1, out
    return int(found[0]) if found else None


@pytest.mark.matrix(TOOLS, "consume-offsets")
def test_console_consumer_offsets(kafka_tools, bootstrap):
    topic = unique("cli-offsets")
    create_topic(bootstrap, topic, 1)
    console_produce(bootstrap, topic, [str(i) for i in range(100)])
    assert get_offset(bootstrap, topic, -2) == 0, "earliest offset"
    assert get_offset(bootstrap, topic, -1) == 100, "latest offset"
    rows = console_consume(
        bootstrap, topic, 58, "--partition", "0", "--offset", "42", "--formatter-property", "print.key=false"
    )
    assert rows == [["Partition:0", f"Offset:{i}", str(i)] for i in range(42, 100)]


@pytest.mark.matrix(
    TOOLS,
    "consume-timestamp",
    note="the console producer cannot set CreateTime: the records are written by the harness (confluent-kafka)",
)
def test_console_consumer_timestamp(kafka_tools, bootstrap):
    # The console producer cannot set CreateTime: the records come from confluent-kafka; the tools under test
    # look offsets up by timestamp (kafka-get-offsets --time) and consume with timestamps.
    topic = unique("cli-ts")
    create_topic(bootstrap, topic, 1)
    t0 = (int(time.time()) - 3600) * 1000
    produce(bootstrap, topic, [Produced(None, str(i).encode(), None, t0 + i * 1000) for i in range(100)])
    assert get_offset(bootstrap, topic, t0 + 50_500) == 51
    assert get_offset(bootstrap, topic, t0) == 0
    assert get_offset(bootstrap, topic, t0 + 200_000) is None, "no offset for a time after the last record"
    rows = console_consume(
        bootstrap,
        topic,
        49,
        "--partition",
        "0",
        "--offset",
        "51",
        "--formatter-property",
        "print.key=false",
        "--formatter-property",
        "print.timestamp=true",
    )
    assert rows == [[f"CreateTime:{t0 + i * 1000}", "Partition:0", f"Offset:{i}", str(i)] for i in range(51, 100)]


# --------------------------------------------------------------------------------------------------------------------
# kafka-consumer-groups
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.matrix(TOOLS, "admin-groups")
def test_consumer_groups_describe_delete(kafka_tools, bootstrap, background):
    topic, group = unique("cli-ag"), unique("cli-ag-g")
    create_topic(bootstrap, topic, 2)
    for p in range(2):
        produce(bootstrap, topic, [Produced(None, f"r{p}".encode(), None)], partition=p)
    member = background(
        "console-consumer",
        tool_cmd(
            "kafka-console-consumer",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--command-property",
            "auto.commit.interval.ms=100",
            "--formatter-property",
            "print.partition=true",
        ),
    )
    wait_until(
        "the console consumer to print both records",
        lambda: len(member.snapshot()) >= 2 or member.proc.poll() is not None,
    )
    assert sorted(member.snapshot()) == ["Partition:0\tr0", "Partition:1\tr1"], member.report()
    wait_until(f"{group} to commit offsets 1 and 1", lambda: committed(bootstrap, group, topic, 2) == {0: 1, 1: 1})

    assert group in tool("kafka-consumer-groups", bootstrap, "--list").split()
    members = table(tool("kafka-consumer-groups", bootstrap, "--describe", "--group", group, "--members", "--verbose"))
    assert len(members) == 1, members
    m = members[0]
    assert m["#PARTITIONS"] == "2", m
    assignment = m.get("ASSIGNMENT", m.get("CURRENT-ASSIGNMENT"))
    assert assignment == f"{topic}:0,1", m
    state = state_row(tool("kafka-consumer-groups", bootstrap, "--describe", "--group", group, "--state"))
    assert (state["STATE"], state["#MEMBERS"], state["ASSIGNMENT-STRATEGY"]) == ("Stable", "1", "range"), state
    offsets = table(tool("kafka-consumer-groups", bootstrap, "--describe", "--group", group, "--offsets"))
    got = sorted((r["TOPIC"], r["PARTITION"], r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for r in offsets)
    assert got == [(topic, "0", "1", "1", "0"), (topic, "1", "1", "1", "0")], offsets
    assert all(r["CONSUMER-ID"] == m["CONSUMER-ID"] for r in offsets), offsets

    ended_cleanly(member)
    wait_until(f"{group} to be Empty", lambda: group_state(bootstrap, group) == "EMPTY")
    state = state_row(tool("kafka-consumer-groups", bootstrap, "--describe", "--group", group, "--state"))
    assert (state["STATE"], state["#MEMBERS"]) == ("Empty", "0"), state
    out = tool("kafka-consumer-groups", bootstrap, "--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in out, out
    assert group not in tool("kafka-consumer-groups", bootstrap, "--list").split()


def reset(bootstrap: str, group: str, topic: str, *how: str) -> dict[int, int]:
    """kafka-consumer-groups --reset-offsets ...: the NEW-OFFSET per partition of the table it prints."""
    rows = table(tool("kafka-consumer-groups", bootstrap, "--reset-offsets", "--group", group, "--topic", topic, *how))
    return {int(r["PARTITION"]): int(r["NEW-OFFSET"]) for r in rows}


@pytest.mark.matrix(
    TOOLS,
    "offsets-commit-fetch",
    note="offsets are committed with kafka-consumer-groups --reset-offsets --execute on a group without members, without metadata; a console consumer in the group must then resume at 3 and 7",
)
def test_consumer_groups_reset_then_consume(kafka_tools, bootstrap):
    """--reset-offsets --execute commits 3 and 7, --describe fetches them, a console consumer resumes there."""
    topic, group = unique("cli-commit"), unique("cli-commit-g")
    create_topic(bootstrap, topic, 2)
    for p in range(2):
        produce(bootstrap, topic, [Produced(None, f"p{p}-{i}".encode(), None) for i in range(10)], partition=p)
    assert reset(bootstrap, group, f"{topic}:0", "--to-offset", "3", "--execute") == {0: 3}
    assert reset(bootstrap, group, f"{topic}:1", "--to-offset", "7", "--execute") == {1: 7}
    offsets = table(tool("kafka-consumer-groups", bootstrap, "--describe", "--group", group, "--offsets"))
    got = sorted((r["PARTITION"], r["CURRENT-OFFSET"], r["LAG"]) for r in offsets)
    assert got == [("0", "3", "7"), ("1", "7", "3")], offsets

    rows = console_consume(bootstrap, topic, 10, "--group", group, "--formatter-property", "print.key=false")
    by_partition: dict[str, list[str]] = {}
    for partition, offset, _value in rows:
        by_partition.setdefault(partition, []).append(offset)
    assert by_partition == {
        "Partition:0": [f"Offset:{i}" for i in range(3, 10)],
        "Partition:1": [f"Offset:{i}" for i in range(7, 10)],
    }, rows


@pytest.mark.matrix(TOOLS, "kafka-consumer-groups --reset-offsets")
def test_consumer_groups_reset_offsets(kafka_tools, bootstrap):
    """--to-offset / --to-earliest / --to-datetime, each --dry-run (nothing committed) and --execute."""
    topic, group = unique("cli-reset"), unique("cli-reset-g")
    create_topic(bootstrap, topic, 2)
    t0 = (int(time.time()) - 3600) * 1000
    for p in range(2):
        produce(bootstrap, topic, [Produced(None, b"v", None, t0 + i * 1000) for i in range(10)], partition=p)

    assert reset(bootstrap, group, topic, "--to-offset", "8", "--execute") == {0: 8, 1: 8}
    assert committed(bootstrap, group, topic, 2) == {0: 8, 1: 8}
    assert reset(bootstrap, group, topic, "--to-earliest", "--dry-run") == {0: 0, 1: 0}
    assert committed(bootstrap, group, topic, 2) == {0: 8, 1: 8}, "--dry-run must not commit"
    assert reset(bootstrap, group, topic, "--to-earliest", "--execute") == {0: 0, 1: 0}
    assert committed(bootstrap, group, topic, 2) == {0: 0, 1: 0}
    # The first record at or after T0 + 4.5 s is offset 5 in both partitions.
    when = datetime.fromtimestamp((t0 + 4500) / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert reset(bootstrap, group, topic, "--to-datetime", when, "--dry-run") == {0: 5, 1: 5}
    assert committed(bootstrap, group, topic, 2) == {0: 0, 1: 0}, "--dry-run must not commit"
    assert reset(bootstrap, group, topic, "--to-datetime", when, "--execute") == {0: 5, 1: 5}
    assert committed(bootstrap, group, topic, 2) == {0: 5, 1: 5}


# --------------------------------------------------------------------------------------------------------------------
# kafka-verifiable-producer / kafka-verifiable-consumer
# --------------------------------------------------------------------------------------------------------------------


def verifiable_produce(
    tmp_path: Path, bootstrap: str, topic: str, count: int, *args: str
) -> dict[tuple[int, int], tuple[str | None, str]]:
    """Runs the verifiable producer (idempotent, acks=all); returns (partition, offset) -> (key, value) of every ack."""
    config = tmp_path / "producer.properties"
    # The tool sets retries=0 itself, which the idempotent producer refuses: the config file overrides it.
    config.write_text("enable.idempotence=true\nretries=2147483647\n")
    out = tool(
        "kafka-verifiable-producer",
        bootstrap,
        "--topic",
        topic,
        "--max-messages",
        str(count),
        "--acks",
        "-1",
        "--command-config",
        str(config),
        *args,
    )
    events = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    errors = [e for e in events if e["name"] == "producer_send_error"]
    assert not errors, errors[:5]
    acked = {
        (e["partition"], e["offset"]): (e["key"], e["value"]) for e in events if e["name"] == "producer_send_success"
    }
    summary = [e for e in events if e["name"] == "tool_data"]
    assert summary and summary[-1]["acked"] == count and summary[-1]["sent"] == count, summary
    assert len(acked) == count, f"{count} records acked at {len(acked)} distinct offsets"
    return acked


@pytest.mark.matrix(
    TOOLS,
    "produce-idempotent",
    note="kafka-verifiable-producer's keys are its own numbers, not key-i",
)
def test_verifiable_producer_idempotent(kafka_tools, bootstrap, tmp_path):
    topic, group = unique("cli-idem"), unique("cli-idem-g")
    create_topic(bootstrap, topic, 3)
    # Keys 0..999 (each once), values 0..999 in send order.
    acked = verifiable_produce(tmp_path, bootstrap, topic, 1000, "--repeating-keys", "1000")
    assert sorted(int(v) for _k, v in acked.values()) == list(range(1000))
    assert all(k == v for k, v in acked.values()), "the tool's key i goes with value i"
    for p in range(3):  # offsets 0..n-1 per partition, values increasing with the offset
        offsets = sorted(o for (q, o) in acked if q == p)
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets {offsets[:10]}..."
        in_order = [int(acked[(p, o)][1]) for o in offsets]
        assert in_order == sorted(in_order), f"partition {p}: values not increasing"

    out = tool(
        "kafka-verifiable-consumer",
        bootstrap,
        "--topic",
        topic,
        "--group-id",
        group,
        "--max-messages",
        "1000",
        "--verbose",
        "--reset-policy",
        "earliest",
    )
    events = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    seen = [((e["partition"], e["offset"]), (e["key"], e["value"])) for e in events if e["name"] == "record_data"]
    assert len(seen) == len(set(seen)) == 1000, f"{len(seen)} records, {len(set(seen))} distinct"
    assert dict(seen) == acked, "the consumer must see every acked record at its acked partition and offset"
    commits = [e for e in events if e["name"] == "offsets_committed"]
    assert commits and all(c["success"] for c in commits), commits


class GroupMember:
    """A kafka-verifiable-consumer in the background and the partitions it owns, from its JSON events."""

    def __init__(self, background, name: str, bootstrap: str, topic: str, group: str, protocol: str):
        self.name = name
        self.bg = background(
            name,
            tool_cmd(
                "kafka-verifiable-consumer",
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--group-id",
                group,
                "--group-protocol",
                protocol,
                "--verbose",
                "--reset-policy",
                "earliest",
            ),
        )

    def owned(self) -> set[int]:
        """Replays assigned / revoked events: eager with the classic protocol's default range assignor (revoke all,
        then assign all), incremental with the consumer protocol (only the partitions that change)."""
        owned: set[int] = set()
        for e in self.bg.events():
            if e["name"] == "partitions_assigned":
                owned |= {p["partition"] for p in e["partitions"]}
            elif e["name"] == "partitions_revoked":
                owned -= {p["partition"] for p in e["partitions"]}
        return owned

    def records(self) -> list[tuple[int, int]]:
        return [(e["partition"], e["offset"]) for e in self.bg.events() if e["name"] == "record_data"]

    def committed(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for e in self.bg.events():
            if e["name"] == "offsets_committed":
                assert e["success"], f"{self.name}: commit failed: {e}"
                out.update({o["partition"]: o["offset"] for o in e["offsets"]})
        return out

    def alive(self) -> bool:
        if self.bg.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited early\n{self.bg.report()}")
        return True


@pytest.mark.parametrize(
    "protocol",
    [
        pytest.param("classic", marks=pytest.mark.matrix(TOOLS, "group-rebalance")),
        # KIP-848 (ConsumerGroupHeartbeat): not a column of its own for the CLI tools, so a further check.
        pytest.param(
            "consumer", marks=pytest.mark.matrix(TOOLS, "kafka-verifiable-consumer --group-protocol consumer")
        ),
    ],
)
def test_verifiable_consumers_rebalance(kafka_tools, bootstrap, background, tmp_path, protocol):
    topic, group = unique("cli-grp"), unique("cli-grp-g")
    create_topic(bootstrap, topic, 4)
    a = GroupMember(background, "verifiable-consumer-A", bootstrap, topic, group, protocol)
    wait_until("A to own all 4 partitions", lambda: a.alive() and a.owned() == {0, 1, 2, 3}, timeout=60)
    b = GroupMember(background, "verifiable-consumer-B", bootstrap, topic, group, protocol)

    def split() -> bool:
        oa, ob = a.owned(), b.owned()
        return a.alive() and b.alive() and oa and ob and not oa & ob and oa | ob == {0, 1, 2, 3}

    wait_until("A and B to own disjoint non-empty sets covering the 4 partitions", split, timeout=60)

    first = set(verifiable_produce(tmp_path, bootstrap, topic, 100))
    wait_until("A and B to receive the 100 records", lambda: len(a.records()) + len(b.records()) >= 100)
    read_by_a, read_by_b = a.records(), b.records()
    both = read_by_a + read_by_b
    assert len(both) == len(set(both)) == 100 and set(both) == first, (
        f"A read {len(read_by_a)}, B read {len(read_by_b)}, {len(set(both))} distinct of the 100 acked"
    )
    ends = {p: 1 + max(o for (q, o) in first if q == p) for p in {q for q, _ in first}}

    def committed_ends() -> bool:
        merged = {**a.committed(), **b.committed()}
        return all(merged.get(p) == end for p, end in ends.items())

    wait_until(f"A and B to commit the end offsets {ends}", committed_ends)

    ended_cleanly(a.bg)
    assert a.records() == read_by_a, "A read records again before it left"
    wait_until("B to own all 4 partitions after A left", lambda: b.alive() and b.owned() == {0, 1, 2, 3}, timeout=60)
    second = set(verifiable_produce(tmp_path, bootstrap, topic, 40, "--value-prefix", "2"))
    wait_until("B to receive the 40 new records", lambda: len(b.records()) - len(read_by_b) >= 40)
    ended_cleanly(b.bg)
    new = b.records()[len(read_by_b) :]
    assert len(new) == 40 and set(new) == second, (
        f"after A left, B read {len(new)} records; not among the 40 new: {sorted(set(new) - second)[:10]}, "
        f"missing: {sorted(second - set(new))[:10]}"
    )
