"""Compatibility matrix row of kcat (Debian's package, librdkafka underneath), driven directly from pytest.

kcat has no admin commands, so topics are created by the harness (confluent-kafka's AdminClient,
interop_helpers.create_topic) before kcat runs, and the scenarios' admin steps are declared not supported.
Everything kcat itself can do for a scenario (produce with -z/-H/-K/-Z, consume with -o, -Q, -G, list with -L)
is checked as interop/SCENARIOS.md says.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time

import pytest

import matrix
from interop_helpers import (
    CLIENT_TIMEOUT,
    Produced,
    admin_client,
    create_topic,
    describe,
    kcat,
    kcat_bin,
    new_producer,
    produce_all,
    run,
    unique,
    wait_until,
)

CLIENT = "kcat"
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


class ClientLacksApi(Exception):
    """kcat has no command for the rest of the scenario; every step before it was run and held."""


def not_supported(reason: str):
    # raises=: any other failure of the steps kcat can do is a real FAIL, not "not supported".
    return pytest.mark.xfail(strict=True, raises=ClientLacksApi, reason=reason)


@pytest.fixture(scope="session", autouse=True)
def kcat_version() -> None:
    proc = run([kcat_bin(), "-V"], timeout=30)
    text = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    m = re.search(r"Version (\S+) .*librdkafka (\S+)", text)
    assert proc.returncode == 0 and m, f"cannot read kcat's version from `kcat -V`:\n{describe(proc)}"
    matrix.set_version(CLIENT, f"{m.group(1)} (librdkafka {m.group(2)})")


# --------------------------------------------------------------------------------------------------------------------
# kcat invocations
# --------------------------------------------------------------------------------------------------------------------


def kcat_produce(bootstrap: str, topic: str, lines: list[str], *opts: str) -> None:
    """One `kcat -P` run: each line is a record; kcat exits after every record is acknowledged (1 on failure)."""
    data = "".join(line + "\n" for line in lines).encode()
    proc = kcat(bootstrap, "-P", "-t", topic, "-X", "message.timeout.ms=30000", *opts, input=data, timeout=60)
    assert proc.returncode == 0 and b"ERROR" not in proc.stderr, describe(proc)


def kcat_consume(bootstrap: str, topic: str, *opts: str) -> list[dict]:
    """`kcat -C -J -e`: every record up to the end of the partition(s), as kcat's JSON envelopes."""
    proc = kcat(bootstrap, "-C", "-t", topic, "-J", "-e", *opts, timeout=60)
    assert proc.returncode == 0 and b"ERROR" not in proc.stderr, describe(proc)
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]


def kcat_query(bootstrap: str, topic: str, partition: int, timestamp: int) -> int:
    """`kcat -Q`: ListOffsets for a timestamp (-1 latest, -2 earliest); -1 when no record is at or after it."""
    proc = kcat(bootstrap, "-Q", "-J", "-t", f"{topic}:{partition}:{timestamp}", timeout=60)
    assert proc.returncode == 0, describe(proc)
    return json.loads(proc.stdout)[topic][str(partition)]["offset"]


def kcat_topics(bootstrap: str) -> dict[str, dict]:
    """`kcat -L -J` for all topics (naming one could auto-create it): name -> metadata entry."""
    proc = kcat(bootstrap, "-L", "-J", timeout=60)
    assert proc.returncode == 0, describe(proc)
    return {t["topic"]: t for t in json.loads(proc.stdout)["topics"]}


def record(m: dict) -> tuple:
    """(partition, offset, key, value, headers) of a JSON envelope; null stays None, headers keep order and nulls."""
    flat = m.get("headers", [])
    headers = tuple(zip(flat[0::2], flat[1::2], strict=True))
    return m["partition"], m["offset"], m["key"], m["payload"], headers


class GroupMember:
    """A `kcat -G` process: records from its stdout (JSON), its assignment from the rebalance lines on stderr."""

    _REBALANCE = re.compile(r"rebalanced.*?(assigned|revoked|incremental assignment|incremental revoke)\b.*?: (.*)$")

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, *opts: str):
        self.name = name
        cmd = [kcat_bin(), "-b", bootstrap, "-X", "broker.address.family=v4", "-G", group, "-J", "-u", *opts, topic]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lock = threading.Lock()
        self._records: list[dict] = []
        self._assignment: set[int] = set()
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(b"{"):
                with self._lock:
                    self._records.append(json.loads(line))

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            m = self._REBALANCE.search(line)
            with self._lock:
                self.stderr.append(line)
                if m:
                    parts = {int(p) for p in re.findall(r"\[(\d+)\]", m.group(2))}
                    if m.group(1) == "assigned":
                        self._assignment = parts
                    elif m.group(1) == "revoked":
                        self._assignment = set()
                    elif m.group(1) == "incremental assignment":
                        self._assignment |= parts
                    else:
                        self._assignment -= parts

    def assignment(self) -> set[int]:
        self._check_alive()
        with self._lock:
            return set(self._assignment)

    def records(self) -> list[dict]:
        with self._lock:
            return list(self._records)

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"kcat {self.name} exited early with {self.proc.returncode}:\n{self.log()}")

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.stderr[-30:])

    def stop(self) -> None:
        """SIGTERM: kcat closes the consumer (committing its offsets, leaving the group) and exits 0."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(
                f"kcat {self.name} did not exit within {CLIENT_TIMEOUT:.0f}s of SIGTERM:\n{self.log()}"
            ) from None
        for t in self._readers:
            t.join(timeout=5)
        assert code == 0, f"kcat {self.name} exited with {code} after SIGTERM:\n{self.log()}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.matrix(CLIENT, "produce-codecs", note="kcat has no admin API: topics are created by the harness (confluent-kafka) in every kcat test")
def test_kcat_produce_codecs(bootstrap):
    topic = f"{unique('kcat')}-codecs"
    create_topic(bootstrap, topic, 1)
    expected = []
    for codec in CODECS:
        pairs = [(f"k-{codec}-{i}", f"v-{codec}-{i}") for i in range(20)]
        kcat_produce(bootstrap, topic, [f"{k}:{v}" for k, v in pairs], "-K:", "-z", codec)
        expected += pairs
    got = [
        (m["partition"], m["offset"], m["key"], m["payload"]) for m in kcat_consume(bootstrap, topic, "-o", "beginning")
    ]
    assert got == [(0, i, k, v) for i, (k, v) in enumerate(expected)]
    assert kcat_query(bootstrap, topic, 0, -1) == 100, "log end offset: a batch was written twice"


@pytest.mark.matrix(CLIENT, "produce-headers-nulls")
def test_kcat_produce_headers_nulls(bootstrap):
    topic = f"{unique('kcat')}-hdr"
    create_topic(bootstrap, topic, 1)
    # -H applies to every record of one kcat run, and -Z (empty key/value -> null) to the whole run too: one run per
    # group of records with the same options, in send order.
    kcat_produce(bootstrap, topic, ["a:1"], "-K:", "-H", "h1=x", "-H", "h2=y", "-H", "h1=z")
    kcat_produce(bootstrap, topic, ["b:", ":3"], "-K:", "-Z")  # (b, null value), (null key, 3)
    kcat_produce(bootstrap, topic, ["d:"], "-K:")  # empty value, not null
    kcat_produce(bootstrap, topic, ["e:5"], "-K:", "-H", "e")  # -H NAME without '=': a header with a null value
    got = [record(m) for m in kcat_consume(bootstrap, topic, "-o", "beginning")]
    assert got == [
        (0, 0, "a", "1", (("h1", "x"), ("h2", "y"), ("h1", "z"))),
        (0, 1, "b", None, ()),
        (0, 2, None, "3", ()),
        (0, 3, "d", "", ()),
        (0, 4, "e", "5", (("e", None),)),
    ]


@pytest.mark.matrix(CLIENT, "produce-idempotent")
def test_kcat_produce_idempotent(bootstrap):
    topic = f"{unique('kcat')}-idem"
    create_topic(bootstrap, topic, 3)
    kcat_produce(
        bootstrap,
        topic,
        [f"key-{i}:{i}" for i in range(1000)],
        "-K:",
        "-X",
        "enable.idempotence=true",
        "-X",
        "acks=all",
    )
    msgs = kcat_consume(bootstrap, topic, "-o", "beginning")
    assert len(msgs) == 1000
    assert sum(kcat_query(bootstrap, topic, p, -1) for p in range(3)) == 1000, "a record was written twice"
    assert sorted((m["key"], m["payload"]) for m in msgs) == sorted((f"key-{i}", str(i)) for i in range(1000))
    for p in range(3):
        values = [
            int(m["payload"]) for m in sorted((m for m in msgs if m["partition"] == p), key=lambda m: m["offset"])
        ]
        assert values == sorted(values), f"partition {p}: values do not increase with the offset"


@pytest.mark.matrix(CLIENT, "consume-offsets")
def test_kcat_consume_offsets(bootstrap):
    topic = f"{unique('kcat')}-offsets"
    create_topic(bootstrap, topic, 1)
    kcat_produce(bootstrap, topic, [str(i) for i in range(100)], "-p", "0")
    assert kcat_query(bootstrap, topic, 0, -2) == 0, "earliest offset"
    assert kcat_query(bootstrap, topic, 0, -1) == 100, "latest offset"
    got = [(m["partition"], m["offset"], m["payload"]) for m in kcat_consume(bootstrap, topic, "-p", "0", "-o", "42")]
    assert got == [(0, i, str(i)) for i in range(42, 100)]


@pytest.mark.matrix(
    CLIENT, "consume-timestamp", note="kcat cannot set CreateTime: the harness (confluent-kafka) writes the records; kcat looks the offsets up (-Q) and reads from the timestamp (-o s@TS)"
)
def test_kcat_consume_timestamp(bootstrap):
    """kcat cannot set a record's CreateTime, so the harness (confluent-kafka) writes the records; kcat does the
    scenario's subject: ListOffsets by timestamp (-Q) and consuming from a timestamp (-o s@TS)."""
    topic = f"{unique('kcat')}-ts"
    create_topic(bootstrap, topic, 1)
    t0 = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000
    produce_all(
        new_producer(bootstrap),
        topic,
        [Produced(None, str(i).encode(), None, timestamp=t0 + i * 1000) for i in range(100)],
    )
    assert kcat_query(bootstrap, topic, 0, t0 + 50_500) == 51
    assert kcat_query(bootstrap, topic, 0, t0) == 0
    assert kcat_query(bootstrap, topic, 0, t0 + 200_000) == -1, "no record at or after T0 + 200000"
    msgs = kcat_consume(bootstrap, topic, "-p", "0", "-o", f"s@{t0 + 50_500}")
    got = [(m["offset"], m["payload"], m["tstype"], m["ts"]) for m in msgs]
    assert got == [(i, str(i), "create", t0 + i * 1000) for i in range(51, 100)]


@pytest.mark.matrix(
    CLIENT, "group-rebalance", note="kcat -G only commits automatically: the interval is 10 min, so the one commit is the synchronous one when A stops"
)
def test_kcat_group_rebalance(bootstrap):
    """Two `kcat -G` members. kcat has no commit command: it commits only through auto commit, so auto commit is on
    with a 10-minute interval, which leaves kcat's one synchronous commit at close (SIGTERM) as the only one.
    auto.offset.reset=earliest: records produced while a member still resolves its start offset are not skipped
    (-o would override committed offsets on every assignment)."""
    prefix = unique("kcat")
    topic, group = f"{prefix}-grp", f"{prefix}-g"
    create_topic(bootstrap, topic, 4)
    opts = ("-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true", "-X", "auto.commit.interval.ms=600000")
    a = GroupMember(bootstrap, group, topic, "A", *opts)
    b = GroupMember(bootstrap, group, topic, "B", *opts)
    try:

        def split():
            pa, pb = a.assignment(), b.assignment()
            return pa and pb and not (pa & pb) and (pa | pb) == {0, 1, 2, 3} and (pa, pb)

        pa, pb = wait_until("kcat A and B to own disjoint, non-empty sets covering all 4 partitions", split)

        first = [f"k-{i}" for i in range(100)]
        kcat_produce(bootstrap, topic, [f"{k}:{k}" for k in first], "-K:")
        wait_until("A and B to receive the first 100 records", lambda: len(a.records()) + len(b.records()) >= 100)
        keys = sorted(m["key"] for m in a.records() + b.records())
        assert keys == sorted(first), "A and B together must receive each of the 100 records exactly once"
        assert {m["partition"] for m in a.records()} <= pa and {m["partition"] for m in b.records()} <= pb

        a.stop()  # commits A's offsets and leaves the group
        seen_by_b = len(b.records())
        wait_until("B to own all 4 partitions", lambda: b.assignment() == {0, 1, 2, 3})

        second = [f"k-{i}" for i in range(100, 140)]
        kcat_produce(bootstrap, topic, [f"{k}:{k}" for k in second], "-K:")
        wait_until("B to receive the 40 new records", lambda: len(b.records()) - seen_by_b >= 40)
        # Re-delivered old records would precede the new ones of their partition; a short drain catches any on a
        # partition that got none of the 40.
        time.sleep(1.0)
        later = sorted(m["key"] for m in b.records()[seen_by_b:])
        assert later == sorted(second), "B must receive exactly the 40 new records and none of the first 100 again"
        b.stop()
    except BaseException:
        print(f"--- kcat A stderr ---\n{a.log()}\n--- kcat B stderr ---\n{b.log()}")
        raise
    finally:
        a.kill()
        b.kill()


@pytest.mark.matrix(CLIENT, "offsets-commit-fetch")
@not_supported(
    "kcat cannot commit chosen offsets (or commit metadata) and cannot fetch committed offsets; "
    "only a new group member starting at the committed offsets (3 and 7) is checked"
)
def test_kcat_offsets_commit_fetch(bootstrap):
    from confluent_kafka import Consumer, TopicPartition

    prefix = unique("kcat")
    topic, group = f"{prefix}-commit", f"{prefix}-g"
    create_topic(bootstrap, topic, 2)
    for p in range(2):
        kcat_produce(bootstrap, topic, [f"p{p}-{i}" for i in range(10)], "-p", str(p))
    # The harness commits in kcat's place (3/m0, 7/m1).
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "broker.address.family": "v4"})
    try:
        committer.commit(
            offsets=[TopicPartition(topic, 0, 3, metadata="m0"), TopicPartition(topic, 1, 7, metadata="m1")],
            asynchronous=False,
        )
    finally:
        committer.close()

    proc = kcat(bootstrap, "-G", group, "-J", "-c", "10", "-X", "enable.auto.commit=false", topic, timeout=60)
    assert proc.returncode == 0, describe(proc)
    msgs = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    firsts = {p: min(m["offset"] for m in msgs if m["partition"] == p) for p in (0, 1)}
    assert firsts == {0: 3, 1: 7}, "a new kcat member of the group must start at the committed offsets"
    raise ClientLacksApi("commit offsets 3/7 with metadata, committed()")


@pytest.mark.matrix(CLIENT, "admin-topics")
@not_supported(
    "kcat has no admin commands: it cannot create or delete topics, add partitions or show topic configs; "
    "only its metadata listing (-L) of a topic the harness creates, grows and deletes is checked"
)
def test_kcat_admin_topics(bootstrap):
    from confluent_kafka.admin import NewPartitions

    topic = f"{unique('kcat')}-adm"
    create_topic(bootstrap, topic, 2, {"retention.ms": "3600000"})
    assert len(kcat_topics(bootstrap)[topic]["partitions"]) == 2
    admin = admin_client(bootstrap)
    admin.create_partitions([NewPartitions(topic, 4)])[topic].result(CLIENT_TIMEOUT)
    wait_until("kcat -L to show 4 partitions", lambda: len(kcat_topics(bootstrap)[topic]["partitions"]) == 4)
    admin.delete_topics([topic])[topic].result(CLIENT_TIMEOUT)
    wait_until("kcat -L to stop listing the deleted topic", lambda: topic not in kcat_topics(bootstrap))
    raise ClientLacksApi("create/describe configs/create again/add partitions/delete")


@pytest.mark.matrix(CLIENT, "admin-groups")
@not_supported(
    "kcat cannot list, describe or delete groups or list group offsets; only the group member's part "
    "(kcat -G reads 1 record from each of the 2 partitions) is checked"
)
def test_kcat_admin_groups(bootstrap):
    prefix = unique("kcat")
    topic, group = f"{prefix}-ag", f"{prefix}-g"
    create_topic(bootstrap, topic, 2)
    for p in range(2):
        kcat_produce(bootstrap, topic, ["x"], "-p", str(p))
    proc = kcat(bootstrap, "-G", group, "-J", "-c", "2", "-X", "auto.offset.reset=earliest", topic, timeout=60)
    assert proc.returncode == 0, describe(proc)
    msgs = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert sorted((m["partition"], m["offset"]) for m in msgs) == [(0, 0), (1, 0)]
    raise ClientLacksApi("list/describe/offsets/delete groups")
