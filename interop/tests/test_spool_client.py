"""Spool's own client and CLI through the matrix scenarios, against `spool broker` and against Apache Kafka 4.3.1.

The client runs as the peer program interop/peers/rust (built by run.sh); the CLI is the real `spool` binary. The
Kafka broker is the `kafka_broker` fixture (conftest.py): a single-node KRaft server from the Maven jars.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

import pytest

import matrix
from interop_helpers import SpoolBroker, peer_bin, run, spool_cli_bin, unique, wait_until

TARGETS = ["spool", "kafka"]
RUST = "spool-client (Rust)"
CLI = "spool CLI"


@pytest.fixture(scope="module", autouse=True)
def _versions() -> None:
    out = subprocess.run([str(spool_cli_bin()), "--version"], capture_output=True, text=True, timeout=30)
    version = out.stdout.strip().removeprefix("spool ")
    matrix.set_version(RUST, version)
    matrix.set_version(CLI, version)


# Where the CLI cannot do a scenario as written, what its test does instead (shown in COMPATIBILITY.md).
CLI_NOTES = {
    "produce-headers-nulls": "`spool produce -H` cannot give a null header value: record e's header is sent empty",
    "consume-timestamp": "`spool produce` cannot set CreateTime: two produce runs give two known timestamp ranges; "
    "`--from-timestamp` with the second run's first timestamp must start at offset 51, with the first record's at 0, "
    "and past the end must read nothing (the CLI does not show the -1 of ListOffsets)",
    "group-rebalance": "`spool consume --group` always auto-commits (every 5 s, on revocation and on exit); "
    "the split is read from `spool groups describe` (Stable, 2 members, 4 partitions with 2 distinct owners)",
    "offsets-commit-fetch": "offsets are committed with `spool groups reset-offsets --topic T:P --to-offset N "
    "--execute` on a group without members (the CLI's route, as kafka-consumer-groups'), without metadata; "
    "a `spool consume --group` member must then start at 3 and 7",
    "admin-groups": "protocol type is not printed by `spool groups describe`; the member's assignment is read "
    "from the CONSUMER-ID column of the offsets table",
}


def _cells(client: str, notes: dict[str, str] | None = None) -> list:
    """One test per (scenario, target), each marked with its matrix cell."""
    notes = notes or {}
    return [
        pytest.param(
            s, t,
            marks=pytest.mark.matrix(client, s, target=t, **({"note": notes[s]} if s in notes else {})),
            id=f"{s}-{t}",
        )
        for s in matrix.SCENARIOS
        for t in TARGETS
    ]


@pytest.fixture
def on(request: pytest.FixtureRequest):
    """on("spool") / on("kafka"): the broker of that target, checked to be alive before and after the test."""
    used: list[SpoolBroker] = []

    def get(target_name: str) -> SpoolBroker:
        broker = request.getfixturevalue("session_broker" if target_name == "spool" else "kafka_broker")
        broker.assert_running()
        used.append(broker)
        return broker

    yield get
    for broker in used:
        broker.assert_running()


# ----------------------------------------------------------------------------------------------------------------
# The client (peer program)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario,target_name", _cells(RUST))
def test_spool_client(scenario: str, target_name: str, on) -> None:
    broker = on(target_name)
    matrix.run_peer([str(peer_bin())], scenario, broker.bootstrap, unique("rs"))


@pytest.mark.parametrize("target_name", TARGETS)
def test_spool_client_splits_batches_too_large_for_the_topic(target_name: str, on) -> None:
    """Not in the matrix: MESSAGE_TOO_LARGE for a batch of several records makes the client split it and
    send the parts with the batch's sequence numbers; the broker must take them, in order, without duplicates."""
    broker = on(target_name)
    matrix.run_peer([str(peer_bin())], "produce-split", broker.bootstrap, unique("rs"))


# ----------------------------------------------------------------------------------------------------------------
# The CLI
# ----------------------------------------------------------------------------------------------------------------


def spool(bootstrap: str, *args: str, input: bytes | None = None, ok: bool = True) -> str:
    proc = run([str(spool_cli_bin()), *args, "-b", bootstrap], input=input, timeout=60)
    text = proc.stdout.decode(errors="replace")
    if ok and proc.returncode != 0:
        pytest.fail(f"spool {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    if not ok:  # the caller looks at everything, errors included
        return text + proc.stderr.decode(errors="replace") + f"\n(exit {proc.returncode})"
    return text


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def consume_all(bootstrap: str, topic: str, fmt: str, *extra: str) -> list[str]:
    return lines_of(spool(bootstrap, "consume", topic, "--from-beginning", "-e", "-f", fmt, *extra))


def describe_rows(out: str) -> dict[int, tuple[str, str]]:
    """{partition: (committed offset, consumer id)} from the table `spool groups describe` prints."""
    rows: dict[int, tuple[str, str]] = {}
    for line in out.splitlines():
        cols = line.split("\t")
        if len(cols) >= 5 and cols[1].isdigit():
            rows[int(cols[1])] = (cols[2], cols[5] if len(cols) > 5 else "")
    return rows


def group_table(bootstrap: str, group: str) -> tuple[str, dict[int, tuple[str, str]]]:
    """(state, {partition: (committed offset, consumer id)}) from `spool groups describe`."""
    out = spool(bootstrap, "groups", "describe", group)
    state = re.search(r"State: (\S+)", out)
    return (state.group(1) if state else "?"), describe_rows(out)


def split_between(bootstrap: str, group: str, members: int, partitions: int) -> bool:
    """True when `spool groups describe` shows every partition assigned and exactly `members` distinct owners."""
    out = spool(bootstrap, "groups", "describe", group, ok=False)
    if "(exit 0)" not in out:
        return False
    owners = {p: owner for p, (_, owner) in describe_rows(out).items()}
    return len(owners) == partitions and "-" not in owners.values() and len(set(owners.values())) == members


class Member:
    """A group member process (by default `spool consume --group`) whose output lines are collected as they come."""

    def __init__(self, bootstrap: str, topic: str, group: str, fmt: str = "%p %o %v", cmd: list[str] | None = None):
        cmd = cmd or [
            str(spool_cli_bin()), "consume", topic, "--group", group, "--from-beginning", "-f", fmt, "-b", bootstrap
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        # Both pipes are drained: a chatty member (a JVM logging rebalances) must never block on a full pipe.
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True)
        self._err_reader.start()

    @staticmethod
    def _read(pipe, into: list[str]) -> None:
        for line in pipe:
            if line.strip():
                into.append(line.strip())

    def stop(self) -> None:
        """SIGTERM: commits, leaves the group, exits 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        self._err_reader.join(timeout=5)
        assert code == 0, f"group member exited {code}: " + "\n".join(self.errors[-20:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.mark.parametrize("scenario,target_name", _cells(CLI, CLI_NOTES))
def test_spool_cli(scenario: str, target_name: str, on) -> None:
    broker = on(target_name)
    CLI_SCENARIOS[scenario](broker.bootstrap, unique("cli"))


def cli_produce_codecs(b: str, prefix: str) -> None:
    topic = f"{prefix}-codecs"
    spool(b, "topics", "create", topic, "--partitions", "1")
    expected = []
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        lines = [f"k-{codec}-{i}:v-{codec}-{i}" for i in range(20)]
        spool(b, "produce", topic, "-z", codec, "-K", ":", input=("\n".join(lines) + "\n").encode())
        expected += lines
    got = consume_all(b, topic, "%o %k:%v")
    assert got == [f"{i} {line}" for i, line in enumerate(expected)]


def cli_produce_headers_nulls(b: str, prefix: str) -> None:
    topic = f"{prefix}-hdr"
    spool(b, "topics", "create", topic, "--partitions", "1")
    # Headers apply to every line of one `spool produce`; a null header value cannot be given (it is sent empty).
    sends = [
        (["-H", "h1=x", "-H", "h2=y", "-H", "h1=z"], "a:1"),
        ([], "b:NULL"),
        ([], "NULL:3"),
        ([], "d:"),
        (["-H", "e="], "e:5"),
    ]
    for flags, line in sends:
        spool(b, "produce", topic, "-K", ":", "--null-marker", "NULL", *flags, input=(line + "\n").encode())
    got = consume_all(b, topic, "%k|%v|%h", "--null-marker", "NULL")
    assert got == ["a|1|h1=x,h2=y,h1=z", "b|NULL|", "NULL|3|", "d||", "e|5|e="]


def cli_produce_idempotent(b: str, prefix: str) -> None:
    topic = f"{prefix}-idem"
    spool(b, "topics", "create", topic, "--partitions", "3")
    lines = [f"key-{i}:{i}" for i in range(1000)]
    spool(b, "produce", topic, "--acks", "all", "-K", ":", input=("\n".join(lines) + "\n").encode())  # idempotent
    got = [line.split(" ") for line in consume_all(b, topic, "%p %k %v")]
    assert len(got) == 1000, f"{len(got)} records"
    assert sorted(int(v) for _, _, v in got) == list(range(1000)), "a value is missing or repeated"
    last: dict[str, int] = {}
    where: dict[str, str] = {}
    for p, k, v in got:
        assert last.get(p, -1) < int(v), f"partition {p}: {v} after {last.get(p)}"
        last[p] = int(v)
        assert where.setdefault(k, p) == p and k == f"key-{v}"


def cli_consume_offsets(b: str, prefix: str) -> None:
    topic = f"{prefix}-offsets"
    spool(b, "topics", "create", topic, "--partitions", "1")
    spool(b, "produce", topic, input=("\n".join(str(i) for i in range(100)) + "\n").encode())
    got = lines_of(spool(b, "consume", topic, "-p", "0", "-o", "42", "-e", "-f", "%o %v"))
    assert got == [f"{i} {i}" for i in range(42, 100)]


def cli_consume_timestamp(b: str, prefix: str) -> None:
    topic = f"{prefix}-ts"
    spool(b, "topics", "create", topic, "--partitions", "1")
    # The CLI cannot set timestamps: two runs, the second one later, give two known timestamp ranges.
    spool(b, "produce", topic, input=("\n".join(str(i) for i in range(51)) + "\n").encode())
    first = [int(line.split()[1]) for line in consume_all(b, topic, "%o %T")]
    wait_until("the clock to pass the first run's timestamps", lambda: time.time() * 1000 > max(first) + 1)
    spool(b, "produce", topic, input=("\n".join(str(i) for i in range(51, 100)) + "\n").encode())
    stamps = [int(line.split()[1]) for line in consume_all(b, topic, "%o %T")]
    t = stamps[51]
    assert t > max(stamps[:51]), "the second run's records are not later than the first run's"
    got = lines_of(spool(b, "consume", topic, "--from-timestamp", str(t), "-e", "-f", "%o %v %T"))
    assert got == [f"{i} {i} {stamps[i]}" for i in range(51, 100)]
    first = lines_of(spool(b, "consume", topic, "--from-timestamp", str(stamps[0]), "-c", "1", "-f", "%o"))
    assert first == ["0"]
    assert lines_of(spool(b, "consume", topic, "--from-timestamp", str(max(stamps) + 3_600_000), "-e")) == []


def cli_group_rebalance(b: str, prefix: str) -> None:
    topic, group = f"{prefix}-grp", f"{prefix}-g"
    spool(b, "topics", "create", topic, "--partitions", "4")
    a, c = Member(b, topic, group), Member(b, topic, group)

    def stable_with(members: int) -> bool:
        # Kafka answers GROUP_ID_NOT_FOUND until the first member joined: not there yet.
        out = spool(b, "groups", "describe", group, ok=False)
        return "State: Stable" in out and f"Members: {members}" in out and split_between(b, group, members, 4)

    try:
        wait_until("two stable members", lambda: stable_with(2), timeout=60)
        spool(b, "produce", topic, "-K", ":", input=("\n".join(f"k-{i}:{i}" for i in range(100)) + "\n").encode())
        wait_until("100 records across both members", lambda: len(a.lines) + len(c.lines) >= 100, timeout=60)
        assert a.lines and c.lines, "one member got every record: the partitions were not split"
        values = sorted(int(line.split()[2]) for line in a.lines + c.lines)
        assert values == list(range(100)), "records lost or delivered twice"
        before = len(c.lines)  # from here on, every record the remaining member gets must be new
        a.stop()  # commits and leaves
        wait_until("the remaining member alone in a stable group", lambda: stable_with(1), timeout=60)
        spool(b, "produce", topic, "-K", ":",
              input=("\n".join(f"k-{i}:{i}" for i in range(100, 140)) + "\n").encode())
        wait_until("the 40 new records", lambda: len(c.lines) - before >= 40, timeout=60)
        new = sorted(int(line.split()[2]) for line in c.lines[before:])
        assert new == list(range(100, 140)), f"after the rebalance the member read {new}"
        c.stop()
        assert len(c.lines) == before + 40, f"extra records after the rebalance: {c.lines[before + 40:]}"
    finally:
        a.kill()
        c.kill()


def cli_offsets_commit_fetch(b: str, prefix: str) -> None:
    topic, group = f"{prefix}-commit", f"{prefix}-g"
    spool(b, "topics", "create", topic, "--partitions", "2")
    for p in (0, 1):
        spool(b, "produce", topic, "-p", str(p), input=("\n".join(f"{p}-{i}" for i in range(10)) + "\n").encode())
    # The CLI commits through kafka-consumer-groups' route: reset-offsets on a group without members.
    spool(b, "groups", "reset-offsets", group, "--topic", f"{topic}:0", "--to-offset", "3", "--execute")
    spool(b, "groups", "reset-offsets", group, "--topic", f"{topic}:1", "--to-offset", "7", "--execute")
    _, rows = group_table(b, group)
    assert {p: off for p, (off, _) in rows.items()} == {0: "3", 1: "7"}, rows
    member = Member(b, topic, group)
    try:
        wait_until("10 records from the committed offsets", lambda: len(member.lines) >= 10, timeout=60)
    finally:
        member.stop()
    first = {}
    for line in member.lines:
        p, o, _ = line.split()
        first.setdefault(int(p), int(o))
    assert first == {0: 3, 1: 7}, f"the group member started at {first}"


def cli_admin_topics(b: str, prefix: str) -> None:
    topic = f"{prefix}-adm"
    spool(b, "topics", "create", topic, "--partitions", "2", "--config", "retention.ms=3600000")
    assert topic in lines_of(spool(b, "topics", "list"))
    wait_until("describe to show 2 partitions", lambda: "PartitionCount: 2" in spool(b, "topics", "describe", topic))
    assert "retention.ms=3600000" in spool(b, "topics", "describe", topic)
    err = spool(b, "topics", "create", topic, "--partitions", "2", ok=False)
    assert "TOPIC_ALREADY_EXISTS" in err and "(exit 1)" in err, err
    spool(b, "topics", "add-partitions", topic, "--partitions", "4")
    wait_until("describe to show 4 partitions", lambda: "PartitionCount: 4" in spool(b, "topics", "describe", topic))
    spool(b, "topics", "delete", topic)
    wait_until("the topic to be gone", lambda: topic not in lines_of(spool(b, "topics", "list")))
    err = spool(b, "topics", "describe", topic, ok=False)
    assert "UNKNOWN_TOPIC_OR_PARTITION" in err, err


def cli_admin_groups(b: str, prefix: str) -> None:
    topic, group = f"{prefix}-ag", f"{prefix}-g"
    spool(b, "topics", "create", topic, "--partitions", "2")
    for p in (0, 1):
        spool(b, "produce", topic, "-p", str(p), input=b"x\n")
    member = Member(b, topic, group)
    try:
        wait_until("the member to read both records", lambda: len(member.lines) >= 2, timeout=60)
        # Auto commit runs every 5 s.
        wait_until("the commits", lambda: {p: o for p, (o, _) in group_table(b, group)[1].items()} == {0: "1", 1: "1"})
        listed = spool(b, "groups", "list")
        assert re.search(rf"^{re.escape(group)}\s+Stable", listed, re.M), listed
        state, rows = group_table(b, group)
        owners = {owner for _, owner in rows.values()}
        assert state == "Stable" and len(owners) == 1 and "" not in owners and "-" not in owners, (state, rows)
        assert "Members: 1" in spool(b, "groups", "describe", group)
    finally:
        member.stop()
    assert group_table(b, group)[0] == "Empty"
    spool(b, "groups", "delete", group)
    assert group not in spool(b, "groups", "list")


CLI_SCENARIOS = {
    "produce-codecs": cli_produce_codecs,
    "produce-headers-nulls": cli_produce_headers_nulls,
    "produce-idempotent": cli_produce_idempotent,
    "consume-offsets": cli_consume_offsets,
    "consume-timestamp": cli_consume_timestamp,
    "group-rebalance": cli_group_rebalance,
    "offsets-commit-fetch": cli_offsets_commit_fetch,
    "admin-topics": cli_admin_topics,
    "admin-groups": cli_admin_groups,
}
assert list(CLI_SCENARIOS) == matrix.SCENARIOS


# ----------------------------------------------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.matrix(CLI, "spool demo --bootstrap-server", target="kafka")
def test_demo_against_kafka(kafka_broker: SpoolBroker) -> None:
    topic = unique("random_numbers")
    proc = run(
        [str(spool_cli_bin()), "demo", topic, "2", "--bootstrap-server", kafka_broker.bootstrap,
         "--count", "10", "--interval-ms", "50"],
        timeout=90,
    )
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, f"demo exited {proc.returncode}\n{out}\n{proc.stderr.decode(errors='replace')}"
    sent = re.findall(rf"^Sending to Kafka topic {re.escape(topic)}: (\d+)$", out, re.M)
    received = re.findall(r"^Received on thread (\d): (\d+)$", out, re.M)
    assert len(sent) == 10 and sorted(sent) == sorted(v for _, v in received), out
    assert {t for t, _ in received} == {"0", "1"}, f"both threads should receive: {out}"
    for t in ("0", "1"):
        assert f"Starting thread {t}" in out and f"Stopping thread {t}" in out


# ----------------------------------------------------------------------------------------------------------------
# A group shared with Java's consumer
# ----------------------------------------------------------------------------------------------------------------

# Against spool every assignor both clients implement (whichever member leads runs it, the other reads its wire
# format); against Kafka the clients' default list, as a user would run it.
MIXED = [("spool", a) for a in ("range", "roundrobin", "sticky", "cooperative-sticky")] + [("kafka", None)]


@pytest.mark.parametrize(
    "target_name,assignor",
    [
        pytest.param(
            t, a,
            marks=pytest.mark.matrix(RUST, f"group shared with Java's consumer ({a or 'default assignors'})", target=t),
            id=f"{a or 'default'}-{t}",
        )
        for t, a in MIXED
    ],
)
def test_group_shared_with_java(target_name: str, assignor: str | None, on) -> None:
    from test_java_clients import CLASSES, JAVA, LIBS

    b = on(target_name).bootstrap
    prefix = unique("mix")
    topic, group = f"{prefix}-shared", f"{prefix}-g"
    spool(b, "topics", "create", topic, "--partitions", "4")
    member_args = ["--bootstrap", b, "--scenario", "group-member", "--prefix", prefix, "--count", "200"]
    member_args += ["--assignor", assignor] if assignor else []
    java = Member(b, topic, group, cmd=[*JAVA, "-cp", f"{CLASSES}:{LIBS}/*", "spool.interop.Peer", *member_args])
    ours = Member(b, topic, group, cmd=[str(peer_bin()), *member_args])
    try:
        def stable_with_both() -> bool:
            out = spool(b, "groups", "describe", group, ok=False)
            if not ("State: Stable" in out and "Members: 2" in out and "Client: spool-interop-peer" in out):
                return False
            # Cooperative rebalances are Stable between their two rounds: wait for the split itself.
            return split_between(b, group, 2, 4)

        wait_until("a stable group of the Java and the Spool member", stable_with_both, timeout=60)
        described = spool(b, "groups", "describe", group)
        if assignor:
            assert f"Protocol: {assignor}" in described, described
        spool(b, "produce", topic, "-K", ":", input=("\n".join(f"k-{i}:{i}" for i in range(200)) + "\n").encode())
        wait_until("200 records across both members", lambda: len(java.lines) + len(ours.lines) >= 200, timeout=60)
        assert java.lines and ours.lines, f"one member read everything: java {len(java.lines)}, spool {len(ours.lines)}"
        rows = [line.split() for line in java.lines + ours.lines]
        positions = [(p, o) for p, o, _ in rows]
        assert len(set(positions)) == len(positions), "a record was delivered to both members"
        assert sorted(int(v) for _, _, v in rows) == list(range(200)), "records lost or duplicated"
        java_parts = {p for p, _, _ in (line.split() for line in java.lines)}
        our_parts = {p for p, _, _ in (line.split() for line in ours.lines)}
        assert not java_parts & our_parts, f"both members read partitions {java_parts & our_parts}"
    finally:
        java.kill()
        ours.kill()
