"""Classic consumer groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup, offset commit/fetch, group admin)
driven by real clients: confluent-kafka (librdkafka), kcat -G, kafka-python and aiokafka.

Every wait has a deadline; a failure says which member saw what.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from interop_helpers import (
    CLIENT_TIMEOUT,
    Consumed,
    Produced,
    admin_client,
    check_consumed_matches,
    client_conf,
    create_topic,
    describe,
    kcat_bin,
    new_producer,
    produce_all,
    unique,
    wait_for_topic,
    wait_until,
)

# kafka-python 3.0 loads its protocol schemas through deprecated importlib.resources calls.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:kafka.*", "ignore::DeprecationWarning:importlib.*")

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 1000
# Join (Spool delays the first rebalance of a new group by group.initial.rebalance.delay.ms, 3 s) + sync.
JOIN_TIMEOUT = 30.0
# A departed member's partitions must move within this long (the brief: ~15 s).
TAKEOVER_TIMEOUT = 15.0


def group_conf(bootstrap: str, group: str, name: str, extra: dict[str, object] | None = None) -> dict[str, object]:
    conf: dict[str, object] = {
        "group.id": group,
        "client.id": name,
        "partition.assignment.strategy": "range",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    }
    conf.update(extra or {})
    return client_conf(bootstrap, conf)


class Member:
    """One confluent-kafka group consumer; remembers every record and error it saw."""

    def __init__(self, bootstrap: str, group: str, name: str, extra: dict[str, object] | None = None):
        from confluent_kafka import Consumer

        self.name = name
        self.consumer = Consumer(group_conf(bootstrap, group, name, extra))
        self.got: list[Consumed] = []
        self.errors: list[str] = []
        self.closed = False

    def subscribe(self, topic: str) -> "Member":
        self.consumer.subscribe([topic])
        return self

    def poll(self, timeout: float = 0.1) -> None:
        from confluent_kafka import KafkaError

        msg = self.consumer.poll(timeout)
        if msg is None:
            return
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                self.errors.append(str(err))
                if err.fatal():
                    raise AssertionError(f"{self.name}: fatal consumer error: {err}")
            return
        self.got.append(Consumed(msg))

    def assigned(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def positions(self) -> dict[int, int]:
        """The next offset to commit per partition: one past the last record read."""
        nxt: dict[int, int] = {}
        for c in self.got:
            nxt[c.partition] = max(nxt.get(c.partition, 0), c.offset + 1)
        return nxt

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()

    def state(self) -> str:
        if self.closed:
            return f"{self.name}: closed, read {len(self.got)} records"
        parts = sorted(self.assigned())
        return f"{self.name}: assigned {parts}, read {len(self.got)} records, errors {self.errors[-5:]}"


def poll_until(members: list[Member], what: str, cond, timeout: float = CLIENT_TIMEOUT) -> float:
    """Polls every open member in turn until cond() holds; returns the seconds it took."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        for m in members:
            if not m.closed:
                m.poll(0.1)
        if cond():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            states = "\n  ".join(m.state() for m in members)
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}:\n  {states}")


def drain(members: list[Member], seconds: float = 1.0) -> None:
    """Keeps polling for a short settle window, so a record delivered twice is seen."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for m in members:
            if not m.closed:
                m.poll(0.1)


def keyed_records(prefix: str, n: int) -> list[Produced]:
    return [
        Produced(b"%s-key-%d" % (prefix.encode(), i), b"%s-value-%d" % (prefix.encode(), i), None) for i in range(n)
    ]


def produce_to_partitions(bootstrap: str, topic: str, records: list[Produced], partitions: int) -> None:
    """Produces record i to partition i % partitions (so every partition gets some)."""
    producer = new_producer(bootstrap)
    for i, r in enumerate(records):
        producer.produce(topic, key=r.key, value=r.value, partition=i % partitions, on_delivery=r.on_delivery)
        producer.poll(0)
    assert producer.flush(CLIENT_TIMEOUT) == 0, "producer.flush: records still undelivered"
    failed = [r for r in records if r.error is not None or r.offset is None]
    assert not failed, f"{len(failed)} deliveries failed, first: {[(r, r.error) for r in failed[:3]]}"


def positions(consumed: list[Consumed]) -> set[tuple[int, int]]:
    return {(c.partition, c.offset) for c in consumed}


def commit_sync(member: Member, topic: str, offsets: dict[int, int], metadata: dict[int, str] | None = None) -> None:
    from confluent_kafka import TopicPartition

    meta = metadata or {}
    tps = [
        TopicPartition(topic, p, o, metadata=meta[p]) if p in meta else TopicPartition(topic, p, o)
        for p, o in sorted(offsets.items())
    ]
    result = member.consumer.commit(offsets=tps, asynchronous=False)
    bad = [(tp.partition, tp.error) for tp in result or [] if tp.error is not None]
    assert not bad, f"{member.name}: commit({offsets}) failed per partition: {bad}"


def committed(consumer, topic: str, parts: list[int]) -> dict[int, tuple[int, str | None]]:
    from confluent_kafka import TopicPartition

    tps = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=CLIENT_TIMEOUT)
    errs = [(tp.partition, tp.error) for tp in tps if tp.error is not None]
    assert not errs, f"committed() returned errors: {errs}"
    return {tp.partition: (tp.offset, tp.metadata) for tp in tps}


# --------------------------------------------------------------------------------------------------
# 1. Two confluent-kafka members share a topic, then one leaves
# --------------------------------------------------------------------------------------------------


def test_two_members_split_consume_once_and_survivor_takes_over(bootstrap):
    topic = unique("grp-split")
    group = unique("grp-split")
    create_topic(bootstrap, topic, 4)
    a = Member(bootstrap, group, "member-a").subscribe(topic)
    b = Member(bootstrap, group, "member-b").subscribe(topic)
    members = [a, b]
    try:
        poll_until(
            members,
            "both members to have partitions covering all 4",
            lambda: a.assigned() and b.assigned() and len(a.assigned() | b.assigned()) == 4,
            JOIN_TIMEOUT,
        )
        assert len(a.assigned()) == 2 and len(b.assigned()) == 2, (
            f"range assignor over 4 partitions and 2 members must give 2+2: a={a.assigned()} b={b.assigned()}"
        )
        assert not (a.assigned() & b.assigned()), f"overlapping assignment: a={a.assigned()} b={b.assigned()}"

        records = keyed_records("split", 100)
        produce_all(new_producer(bootstrap), topic, records)
        poll_until(members, "the two members to read 100 records", lambda: len(a.got) + len(b.got) >= 100)
        drain(members)  # a record delivered twice would show up now
        check_consumed_matches(records, a.got + b.got)
        for m in members:
            foreign = [c for c in m.got if c.partition not in m.assigned()]
            assert not foreign, f"{m.name} read records of partitions it was not assigned: {foreign[:5]}"

        commit_sync(a, topic, a.positions())
        commit_sync(b, topic, b.positions())
        a_parts = a.assigned()
        a.close()  # LeaveGroup: b must get everything without waiting for a's session to time out

        took = poll_until(
            [b],
            "member-b to be assigned all 4 partitions after member-a closed",
            lambda: b.assigned() == {0, 1, 2, 3},
            TAKEOVER_TIMEOUT,
        )
        more = keyed_records("after-leave", 40)
        produce_to_partitions(bootstrap, topic, more, 4)
        before = len(b.got)
        poll_until([b], "member-b to read the 40 new records from all partitions", lambda: len(b.got) - before >= 40)
        drain([b])
        new = b.got[before:]
        assert positions(new) == {(r.partition, r.offset) for r in more}, (
            f"after taking over {sorted(a_parts)} (in {took:.1f}s), member-b should read exactly the 40 new records "
            f"(member-a's committed offsets must be honoured, no redelivery); read {len(new)}: "
            f"unexpected {sorted(positions(new) - {(r.partition, r.offset) for r in more})[:10]}, "
            f"missing {sorted({(r.partition, r.offset) for r in more} - positions(new))[:10]}"
        )
    finally:
        for m in members:
            m.close()


# --------------------------------------------------------------------------------------------------
# 2. A member killed with SIGKILL is expired after session.timeout.ms
# --------------------------------------------------------------------------------------------------

_CHILD_CONSUMER = r"""
import json, sys
from confluent_kafka import Consumer
conf = json.loads(sys.argv[1])
c = Consumer(conf)
c.subscribe([sys.argv[2]])
last = None
while True:
    c.poll(0.2)
    now = sorted(tp.partition for tp in c.assignment())
    if now != last:
        print(json.dumps(now), flush=True)
        last = now
"""


def test_killed_member_is_expired_and_survivor_takes_over(bootstrap):
    topic = unique("grp-kill9")
    group = unique("grp-kill9")
    create_topic(bootstrap, topic, 4)
    conf = group_conf(bootstrap, group, "doomed")
    for k in ("error_cb", "logger"):
        conf.pop(k)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD_CONSUMER, json.dumps(conf), topic],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    child_lines: list[str] = []

    def read_child() -> None:
        assert child.stdout is not None
        for raw in iter(child.stdout.readline, b""):
            child_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    threading.Thread(target=read_child, daemon=True).start()

    def child_assignment() -> set[int] | None:
        for line in reversed(child_lines):
            try:
                return set(json.loads(line))
            except ValueError:
                continue
        return None

    survivor = Member(bootstrap, group, "survivor").subscribe(topic)
    try:
        poll_until(
            [survivor],
            "the survivor (in-process) and the child process to share the 4 partitions",
            lambda: survivor.assigned()
            and child_assignment()
            and survivor.assigned() | child_assignment() == {0, 1, 2, 3}
            and not survivor.assigned() & child_assignment(),
            JOIN_TIMEOUT,
        )
        assert child.poll() is None, "the child consumer exited early:\n" + "\n".join(child_lines[-20:])
        lost = child_assignment()
        os.kill(child.pid, signal.SIGKILL)  # no LeaveGroup: the broker must notice the silence
        child.wait(timeout=10)
        killed_at = time.monotonic()
        took = poll_until(
            [survivor],
            f"the survivor to take over partitions {sorted(lost)} of the SIGKILLed member "
            f"(session.timeout.ms={SESSION_TIMEOUT_MS})",
            lambda: survivor.assigned() == {0, 1, 2, 3},
            SESSION_TIMEOUT_MS / 1000 + TAKEOVER_TIMEOUT,
        )
        # Kafka expires a member on missed heartbeats, not on a closed connection (clients reconnect and
        # stay members): with a 6 s session and 1 s heartbeats that is at least ~5 s after the kill.
        assert time.monotonic() - killed_at >= 3.0, (
            f"the killed member's partitions moved {took:.1f}s after SIGKILL, before its session "
            f"({SESSION_TIMEOUT_MS} ms) could have expired"
        )

        more = keyed_records("after-kill", 40)
        produce_to_partitions(bootstrap, topic, more, 4)
        poll_until([survivor], "the survivor to read 40 records from all 4 partitions", lambda: len(survivor.got) >= 40)
        assert positions(survivor.got) == {(r.partition, r.offset) for r in more}, survivor.got
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        survivor.close()


# --------------------------------------------------------------------------------------------------
# 3. Offset commits: metadata, resume after commit, durability across a restart
# --------------------------------------------------------------------------------------------------

META = {0: "m-é", 1: "m-é-1 with spaces/and:punctuation"}


def test_commit_metadata_and_new_member_resumes_after_commit(bootstrap):
    topic = unique("grp-commit")
    group = unique("grp-commit")
    create_topic(bootstrap, topic, 2)
    records = keyed_records("commit", 30)
    produce_to_partitions(bootstrap, topic, records, 2)  # offsets 0..14 in each partition

    first = Member(bootstrap, group, "first").subscribe(topic)
    try:
        poll_until([first], "the only member to read all 30 records", lambda: len(first.got) >= 30, JOIN_TIMEOUT)
        check_consumed_matches(records, first.got)
        commit_sync(first, topic, {0: 6, 1: 11}, META)
        got = committed(first.consumer, topic, [0, 1])
        assert got == {0: (6, META[0]), 1: (11, META[1])}, f"committed() after commit: {got}"
    finally:
        first.close()

    second = Member(bootstrap, group, "second").subscribe(topic)
    try:
        want = {(0, o) for o in range(6, 15)} | {(1, o) for o in range(11, 15)}
        poll_until(
            [second],
            "the new member to read the 13 uncommitted records",
            lambda: want <= positions(second.got),
            JOIN_TIMEOUT,
        )
        drain([second])
        extra = sorted(positions(second.got) - want)
        assert not extra, f"the new member re-read records below the committed offsets (p, offset): {extra}"
        assert len(second.got) == len(want), f"records read twice: {sorted(positions(second.got))}"
        got = committed(second.consumer, topic, [0, 1])
        assert got == {0: (6, META[0]), 1: (11, META[1])}, f"committed() seen by another member: {got}"
    finally:
        second.close()


@pytest.mark.slow
def test_committed_offsets_survive_restart(broker_factory, tmp_path):
    from confluent_kafka import Consumer

    data = tmp_path / "data"
    first = broker_factory(data, name="groups-before-restart")
    topic = unique("grp-restart")
    group = unique("grp-restart")
    create_topic(first.bootstrap, topic, 2)
    records = keyed_records("restart", 20)
    produce_to_partitions(first.bootstrap, topic, records, 2)  # offsets 0..9 in each partition

    m = Member(first.bootstrap, group, "before").subscribe(topic)
    try:
        poll_until([m], "the member to read all 20 records", lambda: len(m.got) >= 20, JOIN_TIMEOUT)
        commit_sync(m, topic, {0: 4, 1: 7}, META)
        assert committed(m.consumer, topic, [0, 1]) == {0: (4, META[0]), 1: (7, META[1])}
    finally:
        m.close()
    first.stop_ok()

    second = broker_factory(data, name="groups-after-restart")
    wait_for_topic(admin_client(second.bootstrap), topic, 2)
    probe = Consumer(group_conf(second.bootstrap, group, "probe"))
    try:
        got = wait_until(
            "committed() to answer after the restart",
            lambda: committed(probe, topic, [0, 1]),
        )
        assert got == {0: (4, META[0]), 1: (7, META[1])}, f"committed offsets after SIGTERM + restart: {got}"
    finally:
        probe.close()

    m2 = Member(second.bootstrap, group, "after").subscribe(topic)
    try:
        want = {(0, o) for o in range(4, 10)} | {(1, o) for o in range(7, 10)}
        poll_until(
            [m2],
            "the member to resume from the committed offsets after the restart",
            lambda: want <= positions(m2.got),
            JOIN_TIMEOUT,
        )
        drain([m2])
        assert positions(m2.got) == want and len(m2.got) == len(want), (
            f"after the restart the group must resume at p0=4, p1=7; read {sorted(positions(m2.got))}"
        )
    finally:
        m2.close()


# --------------------------------------------------------------------------------------------------
# 4. AdminClient group operations
# --------------------------------------------------------------------------------------------------


def _result(future):
    import concurrent.futures

    try:
        return future.result(timeout=CLIENT_TIMEOUT)
    except concurrent.futures.TimeoutError:
        raise AssertionError(f"admin request got no answer within {CLIENT_TIMEOUT:.0f}s") from None


def _listed(admin, group: str):
    res = _result(admin.list_consumer_groups(request_timeout=CLIENT_TIMEOUT))
    assert not res.errors, f"list_consumer_groups errors: {res.errors}"
    return next((g for g in res.valid if g.group_id == group), None)


def _describe(admin, group: str):
    return _result(admin.describe_consumer_groups([group], request_timeout=CLIENT_TIMEOUT)[group])


def _listed_offsets(admin, group: str, topic: str | None = None, parts: list[int] | None = None) -> dict[int, int]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    tps = [TopicPartition(topic, p) for p in parts] if parts is not None else None
    req = [ConsumerGroupTopicPartitions(group, tps)]
    res = _result(admin.list_consumer_group_offsets(req, request_timeout=CLIENT_TIMEOUT)[group])
    errs = [(tp.topic, tp.partition, tp.error) for tp in res.topic_partitions or [] if tp.error is not None]
    assert not errs, f"list_consumer_group_offsets({group}) partition errors: {errs}"
    return {tp.partition: tp.offset for tp in res.topic_partitions or [] if tp.offset >= 0}


def test_admin_list_describe_offsets_alter_delete(bootstrap):
    from confluent_kafka import (
        ConsumerGroupState,
        ConsumerGroupTopicPartitions,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    admin = admin_client(bootstrap)
    topic = unique("grp-admin")
    group = unique("grp-admin")
    create_topic(bootstrap, topic, 4)
    records = keyed_records("admin", 20)
    produce_to_partitions(bootstrap, topic, records, 4)  # offsets 0..4 in each partition

    a = Member(bootstrap, group, "admin-member-a").subscribe(topic)
    b = Member(bootstrap, group, "admin-member-b").subscribe(topic)
    members = [a, b]
    try:
        poll_until(
            members,
            "both members to be assigned",
            lambda: a.assigned() and b.assigned() and len(a.assigned() | b.assigned()) == 4,
            JOIN_TIMEOUT,
        )

        def stable_listing():
            for m in members:
                m.poll(0.05)
            g = _listed(admin, group)
            return g if g is not None and g.state == ConsumerGroupState.STABLE else None

        listing = wait_until(f"list_consumer_groups to show {group} as STABLE", stable_listing)
        assert listing.is_simple_consumer_group is False, listing

        def stable_description():
            for m in members:
                m.poll(0.05)
            d = _describe(admin, group)
            return d if d.state == ConsumerGroupState.STABLE and len(d.members) == 2 else None

        desc = wait_until(f"describe_consumer_groups to show {group} STABLE with 2 members", stable_description)
        assert desc.group_id == group and desc.is_simple_consumer_group is False, desc
        assert desc.partition_assignor == "range", f"partition_assignor {desc.partition_assignor!r}"
        by_client = {m.client_id: m for m in desc.members}
        assert set(by_client) == {"admin-member-a", "admin-member-b"}, f"client ids: {sorted(by_client)}"
        assert len({m.member_id for m in desc.members}) == 2 and all(m.member_id for m in desc.members), desc.members
        for m in members:
            d = by_client[m.name]
            described = {(tp.topic, tp.partition) for tp in d.assignment.topic_partitions}
            assert described == {(topic, p) for p in m.assigned()}, (
                f"{m.name}: described assignment {sorted(described)}, the client has {sorted(m.assigned())}"
            )
            assert d.host, f"{m.name}: empty host in member description"

        # Deleting a group with live members is NON_EMPTY_GROUP.
        fut = admin.delete_consumer_groups([group], request_timeout=CLIENT_TIMEOUT)[group]
        try:
            _result(fut)
        except KafkaException as exc:
            assert exc.args[0].code() == KafkaError.NON_EMPTY_GROUP, f"expected NON_EMPTY_GROUP, got {exc.args[0]}"
        else:
            raise AssertionError("delete_consumer_groups succeeded on a group with 2 active members")

        commit_sync(a, topic, {p: 2 for p in a.assigned()})
        commit_sync(b, topic, {p: 3 for p in b.assigned()})
        want = {p: 2 for p in a.assigned()} | {p: 3 for p in b.assigned()}
        assert _listed_offsets(admin, group) == want, "list_consumer_group_offsets (all partitions)"
        assert _listed_offsets(admin, group, topic, [0, 1, 2, 3]) == want, "list_consumer_group_offsets (given)"
    finally:
        for m in members:
            m.close()

    def empty_group():
        d = _describe(admin, group)
        return d if d.state == ConsumerGroupState.EMPTY else None

    desc = wait_until(f"{group} to be EMPTY after both members closed", empty_group)
    assert not desc.members, desc.members
    listing = wait_until(
        f"list_consumer_groups to show {group} EMPTY",
        lambda: (g := _listed(admin, group)) is not None and g.state == ConsumerGroupState.EMPTY and g,
    )

    # Altering offsets of an empty group works, including for a partition with no commit yet.
    new_offsets = {0: 5, 1: 0, 2: 4, 3: 1}
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in new_offsets.items()])
    res = _result(admin.alter_consumer_group_offsets([req], request_timeout=CLIENT_TIMEOUT)[group])
    errs = [(tp.partition, tp.error) for tp in res.topic_partitions if tp.error is not None]
    assert not errs, f"alter_consumer_group_offsets partition errors: {errs}"
    assert _listed_offsets(admin, group) == new_offsets, "offsets after alter_consumer_group_offsets"

    # A member joining now starts at the altered offsets.
    c = Member(bootstrap, group, "after-alter").subscribe(topic)
    try:
        want_pos = {(p, o) for p, start in new_offsets.items() for o in range(start, 5)}
        poll_until(
            [c], "a new member to read from the altered offsets", lambda: want_pos <= positions(c.got), JOIN_TIMEOUT
        )
        assert positions(c.got) == want_pos and len(c.got) == len(want_pos), sorted(positions(c.got))
    finally:
        c.close()
    wait_until(f"{group} to be EMPTY again", empty_group)

    _result(admin.delete_consumer_groups([group], request_timeout=CLIENT_TIMEOUT)[group])
    wait_until(f"{group} to disappear from list_consumer_groups", lambda: _listed(admin, group) is None)
    assert _listed_offsets(admin, group) == {}, "the deleted group still has offsets"
    probe = Member(bootstrap, group, "probe-after-delete")
    try:
        from confluent_kafka import OFFSET_INVALID

        got = committed(probe.consumer, topic, [0, 1, 2, 3])
        assert all(o == OFFSET_INVALID for o, _ in got.values()), f"committed() after delete: {got}"
    finally:
        probe.close()


# --------------------------------------------------------------------------------------------------
# 5. kcat -G (balanced consumer)
# --------------------------------------------------------------------------------------------------


def test_kcat_balanced_consumer_reads_everything(bootstrap):
    topic = unique("grp-kcat")
    group = unique("grp-kcat")
    create_topic(bootstrap, topic, 3)
    records = keyed_records("kcat", 60)
    produce_all(new_producer(bootstrap), topic, records)
    cmd = [
        kcat_bin(),
        "-b",
        bootstrap,
        "-X",
        "broker.address.family=v4",
        "-G",
        group,
        topic,
        "-o",
        "beginning",
        "-e",
        "-f",
        "%p %o %k\\n",
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.decode().split("\n")
    got = [tuple(line.split(" ")) for line in lines if line]
    read = [(int(p), int(o)) for p, o, _k in got]
    assert len(read) == len(set(read)), f"kcat -G read some records twice\n{describe(proc)}"
    want = {(r.partition, r.offset) for r in records}
    assert set(read) == want, (
        f"kcat -G read {len(read)} records; missing {sorted(want - set(read))[:10]}, "
        f"unexpected {sorted(set(read) - want)[:10]}\n{describe(proc)}"
    )
    keys = {(int(p), int(o)): k.encode() for p, o, k in got}
    assert all(keys[(r.partition, r.offset)] == r.key for r in records), "kcat -G printed wrong keys"


class KcatMember:
    """A `kcat -G` process; its output lines and its rebalance messages are collected."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str):
        self.name = name
        self.cmd = [
            kcat_bin(),
            "-b",
            bootstrap,
            "-X",
            "broker.address.family=v4",
            "-X",
            f"client.id={name}",
            "-X",
            f"session.timeout.ms={SESSION_TIMEOUT_MS}",
            "-X",
            "partition.assignment.strategy=range",
            "-X",
            "auto.offset.reset=earliest",
            "-u",
            "-G",
            group,
            topic,
            "-f",
            "%p %o\\n",
        ]
        self.out: list[str] = []
        self.err: list[str] = []
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:
        for raw in iter(stream.readline, b""):
            sink.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def assigned(self) -> set[int] | None:
        """Partitions from kcat's last '% Group ... rebalanced ... assigned: t [0], t [1]' line."""
        import re

        for line in reversed(list(self.err)):
            if "rebalanced" in line and "assigned:" in line:
                return {int(p) for p in re.findall(r"\[(\d+)\]", line.split("assigned:", 1)[1])}
            if "rebalanced" in line and "revoked" in line:
                return set()
        return None

    def read(self) -> list[tuple[int, int]]:
        return [tuple(int(x) for x in line.split(" ")) for line in list(self.out) if line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def state(self) -> str:
        return (
            f"{self.name} (exit {self.proc.poll()}): assigned {self.assigned()}, read {len(self.read())}; "
            f"stderr tail: {self.err[-6:]}"
        )


def test_two_kcat_balanced_consumers_split_partitions(bootstrap):
    topic = unique("grp-kcat2")
    group = unique("grp-kcat2")
    create_topic(bootstrap, topic, 4)
    k1 = KcatMember(bootstrap, group, topic, "kcat-1")
    k2 = KcatMember(bootstrap, group, topic, "kcat-2")
    try:

        def split():
            a1, a2 = k1.assigned(), k2.assigned()
            return a1 and a2 and not (a1 & a2) and (a1 | a2) == {0, 1, 2, 3}

        try:
            wait_until("two kcat -G to split the 4 partitions", split, JOIN_TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n  {k1.state()}\n  {k2.state()}") from None
        split_at = {k.name: k.assigned() for k in (k1, k2)}
        records = keyed_records("kcat2", 100)
        produce_to_partitions(bootstrap, topic, records, 4)
        want = {(r.partition, r.offset) for r in records}
        try:
            wait_until("the two kcat -G to read all 100 records", lambda: want <= set(k1.read()) | set(k2.read()))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n  {k1.state()}\n  {k2.state()}") from None
        time.sleep(1.0)  # let a duplicate, if any, arrive
    finally:
        k1.stop()
        k2.stop()
    both = k1.read() + k2.read()
    assert len(both) == len(set(both)) == 100, (
        f"records read twice: {sorted(p for p in set(both) if both.count(p) > 1)[:10]}\n  {k1.state()}\n  {k2.state()}"
    )
    for k in (k1, k2):
        parts = {p for p, _ in k.read()}
        assert parts == split_at[k.name], f"{k.name} read partitions {sorted(parts)}, assigned {split_at[k.name]}"


# --------------------------------------------------------------------------------------------------
# 6. Pure-Python clients: kafka-python and aiokafka
# --------------------------------------------------------------------------------------------------


def test_kafka_python_group_consume_and_commit(bootstrap):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    topic = unique("grp-kpy")
    group = unique("grp-kpy")
    create_topic(bootstrap, topic, 3)
    records = keyed_records("kpy", 30)
    produce_to_partitions(bootstrap, topic, records, 3)  # offsets 0..9 in each partition

    def consumer(name: str) -> "KafkaConsumer":
        return KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            request_timeout_ms=int(CLIENT_TIMEOUT * 1000),
        )

    def read(c, want: set[tuple[int, int]], what: str) -> list[tuple[int, int, bytes]]:
        got: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not want <= {(p, o) for p, o, _ in got}:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"kafka-python: timed out reading {what}: got {sorted((p, o) for p, o, _ in got)}"
                    f", assignment {c.assignment()}"
                )
            for tp, msgs in c.poll(timeout_ms=200).items():
                got += [(tp.partition, m.offset, m.key) for m in msgs]
        return got

    c1 = consumer("kafka-python-1")
    try:
        got = read(c1, {(r.partition, r.offset) for r in records}, "all 30 records")
        assert sorted((p, o) for p, o, _ in got) == sorted((r.partition, r.offset) for r in records), got
        assert {(p, o): k for p, o, k in got} == {(r.partition, r.offset): r.key for r in records}
        c1.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "kpy-é", -1) for p, o in {0: 3, 1: 5, 2: 10}.items()})
        got_committed = {p: c1.committed(TopicPartition(topic, p)) for p in range(3)}
        assert got_committed == {0: 3, 1: 5, 2: 10}, f"kafka-python committed(): {got_committed}"
    finally:
        c1.close()

    c2 = consumer("kafka-python-2")
    try:
        want = {(0, o) for o in range(3, 10)} | {(1, o) for o in range(5, 10)}
        got = read(c2, want, "the records after the commit")
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            for tp, msgs in c2.poll(timeout_ms=100).items():
                got += [(tp.partition, m.offset, m.key) for m in msgs]
        assert sorted((p, o) for p, o, _ in got) == sorted(want), "kafka-python: no redelivery after commit"
    finally:
        c2.close()


def test_aiokafka_group_consume_and_commit(bootstrap):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    topic = unique("grp-aio")
    group = unique("grp-aio")
    create_topic(bootstrap, topic, 3)
    records = keyed_records("aio", 30)
    produce_to_partitions(bootstrap, topic, records, 3)
    want = {(r.partition, r.offset): r.key for r in records}

    async def main() -> tuple[dict[tuple[int, int], bytes], int, dict[int, int | None]]:
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id="aiokafka-1",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            request_timeout_ms=int(CLIENT_TIMEOUT * 1000),
        )
        await c.start()
        got: dict[tuple[int, int], bytes] = {}
        dups = 0
        try:
            deadline = time.monotonic() + JOIN_TIMEOUT
            while not set(want) <= set(got):
                if time.monotonic() >= deadline:
                    raise AssertionError(f"aiokafka: timed out; read {sorted(got)}, assignment {c.assignment()}")
                for tp, msgs in (await c.getmany(timeout_ms=200)).items():
                    for m in msgs:
                        dups += (tp.partition, m.offset) in got
                        got[(tp.partition, m.offset)] = m.key
            await c.commit({TopicPartition(topic, p): 10 for p in range(3)})
            commits = {p: await c.committed(TopicPartition(topic, p)) for p in range(3)}
        finally:
            await c.stop()
        return got, dups, commits

    got, dups, commits = asyncio.run(asyncio.wait_for(main(), JOIN_TIMEOUT + CLIENT_TIMEOUT))
    assert got == want, f"aiokafka read {len(got)} of {len(want)}: missing {sorted(set(want) - set(got))[:10]}"
    assert dups == 0, f"aiokafka read {dups} records twice"
    assert commits == {0: 10, 1: 10, 2: 10}, f"aiokafka committed(): {commits}"


def test_spool_and_librdkafka_members_share_one_group(bootstrap):
    """A `spool consume --group` member and a confluent-kafka member in one group (range, the
    assignor both offer): they split the partitions and read every record exactly once."""
    from interop_helpers import check_spool_bin

    topic = unique("mixed")
    group = unique("mixed-group")
    create_topic(bootstrap, topic, 4)
    rd = Member(bootstrap, group, "rdkafka-member").subscribe(topic)
    spool_member = None
    try:
        poll_until([rd], "the librdkafka member to own all 4 partitions", lambda: rd.assigned() == {0, 1, 2, 3}, JOIN_TIMEOUT)
        spool_member = subprocess.Popen(
            [str(check_spool_bin()), "consume", topic, "--group", group, "--from-beginning",
             "--count", "40", "-f", "%p %o", "-b", bootstrap],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        poll_until([rd], "the Spool member to take two partitions", lambda: len(rd.assigned()) == 2, JOIN_TIMEOUT)
        admin = admin_client(bootstrap)
        desc = admin.describe_consumer_groups([group])[group].result(timeout=CLIENT_TIMEOUT)
        clients = sorted(m.client_id for m in desc.members)
        assert clients == ["rdkafka-member", "spool-cli"], clients
        assert str(desc.partition_assignor) == "range", desc.partition_assignor

        records = keyed_records(topic, 80)
        produce_to_partitions(bootstrap, topic, records, 4)
        mine = set(rd.assigned())
        poll_until([rd], "the librdkafka member to read its 40 records", lambda: len(rd.got) >= 40, CLIENT_TIMEOUT)
        out, err = spool_member.communicate(timeout=CLIENT_TIMEOUT)
        assert spool_member.returncode == 0, err.decode(errors="replace")
        theirs = {tuple(int(x) for x in line.split()) for line in out.decode().splitlines()}
        assert len(theirs) == 40, out.decode()
        assert all(p not in mine for p, _ in theirs), f"Spool read from {sorted({p for p, _ in theirs})}, librdkafka owns {sorted(mine)}"
        # Once the Spool member has left, librdkafka owns everything: for the Spool member's
        # partitions it must start from what Spool committed on close (their ends), so it reads
        # nothing there. (Its own, uncommitted partitions may be read again after the rebalance.)
        poll_until([rd], "the librdkafka member to own all 4 partitions again", lambda: rd.assigned() == {0, 1, 2, 3}, JOIN_TIMEOUT)
        drain([rd], 2.0)
        spool_parts = {p for p, _ in theirs}
        reread = sorted(pos for pos in positions(rd.got) if pos[0] in spool_parts)
        assert not reread, f"librdkafka re-read records the Spool member had committed: {reread[:5]}"
        both = positions(rd.got) | theirs
        assert len(both) == 80, f"together {len(both)} distinct records of 80"
    finally:
        if spool_member is not None and spool_member.poll() is None:
            spool_member.kill()
            spool_member.wait()
        rd.close()
