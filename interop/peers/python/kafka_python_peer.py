"""kafka-python peer program for the interop scenarios (interop/SCENARIOS.md).

    python kafka_python_peer.py --bootstrap HOST:PORT --scenario NAME --prefix PREFIX

Codecs: kafka-python compresses snappy, lz4 and zstd only with the optional packages python-snappy, lz4 and
zstandard installed (interop/requirements.txt); gzip is built in.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from concurrent.futures import Future
from typing import Iterable

import scenario_common as sc
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from scenario_common import WAIT, CheckFailed, Rec, check, check_equal, ok, wait_for

CLIENT = "kafka-python"
WAIT_MS = int(WAIT * 1000)


# --------------------------------------------------------------------------------------------------------------------
# Client plumbing
# --------------------------------------------------------------------------------------------------------------------


def new_admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=WAIT_MS)


def new_consumer(bootstrap: str, group: str | None = None, **extra: object) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest", **extra
    )


def create_topic(admin: KafkaAdminClient, name: str, partitions: int, configs: dict[str, str] | None = None) -> None:
    # wait_for_metadata: returns once Metadata shows the topic with a leader for every partition.
    admin.create_topics(
        {name: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}},
        timeout_ms=WAIT_MS,
        wait_for_metadata=True,
    )
    ok(f"created topic {name} with {partitions} partitions")


def produce(producer: KafkaProducer, topic: str, records: Iterable[dict[str, object]]) -> None:
    """Sends every record (keyword arguments of KafkaProducer.send), flushes, and fails on any delivery error."""
    futures = [producer.send(topic, **record) for record in records]
    producer.flush(timeout=WAIT)
    errors = []
    for future in futures:
        try:
            future.get(timeout=WAIT)
        except Exception as exc:  # noqa: BLE001 - every delivery error is reported
            errors.append(repr(exc))
    if errors:
        raise CheckFailed(f"producing to {topic}: {len(errors)} delivery errors, first: {errors[:3]}")
    ok(f"{len(futures)} records acknowledged by {topic}")


def to_rec(r) -> Rec:
    return Rec(r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp)


def poll_into(consumer: KafkaConsumer, got: list[Rec], timeout_ms: int = 100) -> None:
    for batch in consumer.poll(timeout_ms=timeout_ms).values():
        got.extend(to_rec(r) for r in batch)


def read(consumer: KafkaConsumer, count: int, what: str) -> list[Rec]:
    """Polls until `count` records arrived (fails at the deadline with what it got)."""
    recs: list[Rec] = []
    deadline = time.monotonic() + WAIT
    while len(recs) < count:
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{what}: read {len(recs)} of {count} records within {WAIT:.0f}s; last: {recs[-3:]}")
        poll_into(consumer, recs, timeout_ms=500)
    return recs


def subscribe(consumer: KafkaConsumer, topic: str) -> None:
    """subscribe(), then load the topic's metadata before the first poll() joins the group.

    Without the metadata, the group leader's first assignment is empty and it rejoins once the metadata arrives.
    kafka-python 3.0.12 can lose the result of that rejoin: if its SyncGroup answer arrives after a poll(timeout_ms)
    gave up, the next poll() no longer sees a reason to rejoin and never applies the assignment (or re-enables the
    heartbeat), so the member waits forever with no partitions. Seen against both Spool and Apache Kafka.
    """
    consumer.subscribe([topic])
    if not consumer.partitions_for_topic(topic):
        raise CheckFailed(f"metadata shows no partitions for {topic}")


def partitions_of(consumer: KafkaConsumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


def commit_positions(consumer: KafkaConsumer) -> None:
    """Synchronously commits the position of every assigned partition."""
    offsets = {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in consumer.assignment()}
    consumer.commit(offsets)
    ok(f"committed {sorted((tp.partition, om.offset) for tp, om in offsets.items())}")


# --------------------------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------------------------


def produce_codecs(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-codecs"
    create_topic(new_admin(bootstrap), topic, 1)
    for codec in sc.CODECS:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, compression_type=None if codec == "none" else codec
        )
        produce(producer, topic, ({"key": k, "value": v} for k, v in sc.codec_records(codec)))
        producer.close()
    tp = TopicPartition(topic, 0)
    consumer = new_consumer(bootstrap)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        recs = read(consumer, len(sc.CODECS) * sc.RECORDS_PER_CODEC, "reading the codecs topic")
        end = consumer.end_offsets([tp], timeout_ms=WAIT_MS)[tp]
    finally:
        consumer.close()
    sc.check_codecs_read_back(recs, end)


def produce_headers_nulls(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-hdr"
    create_topic(new_admin(bootstrap), topic, 1)
    # kafka-python's send() only takes (str, bytes) headers: it cannot express a null header value, so the last
    # record carries an empty one (as the scenario allows).
    records = sc.header_records(null_header_value=False)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    produce(producer, topic, ({"key": k, "value": v, "headers": list(h)} for k, v, h in records))
    producer.close()
    tp = TopicPartition(topic, 0)
    consumer = new_consumer(bootstrap)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        recs = read(consumer, len(records), "reading the headers topic")
    finally:
        consumer.close()
    sc.check_header_records(recs, null_header_value=False)


def produce_idempotent(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-idem"
    create_topic(new_admin(bootstrap), topic, sc.IDEMPOTENT_PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    produce(producer, topic, ({"key": k, "value": v} for k, v in sc.idempotent_records()))
    producer.close()
    tps = [TopicPartition(topic, p) for p in range(sc.IDEMPOTENT_PARTITIONS)]
    consumer = new_consumer(bootstrap)
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        recs = read(consumer, sc.IDEMPOTENT_RECORDS, "reading the idempotent topic")
        ends = {tp.partition: end for tp, end in consumer.end_offsets(tps, timeout_ms=WAIT_MS).items()}
    finally:
        consumer.close()
    sc.check_idempotent_read_back(recs, ends)


def consume_offsets(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-offsets"
    create_topic(new_admin(bootstrap), topic, 1)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    produce(producer, topic, ({"value": v} for v in sc.offsets_values()))
    producer.close()
    tp = TopicPartition(topic, 0)
    consumer = new_consumer(bootstrap)
    try:
        earliest = consumer.beginning_offsets([tp], timeout_ms=WAIT_MS)[tp]
        latest = consumer.end_offsets([tp], timeout_ms=WAIT_MS)[tp]
        sc.check_watermarks(earliest, latest)
        consumer.assign([tp])
        consumer.seek(tp, sc.SEEK_TO)
        recs = read(consumer, sc.OFFSETS_RECORDS - sc.SEEK_TO, "reading after the seek")
    finally:
        consumer.close()
    sc.check_read_from_seek(recs)


def consume_timestamp(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-ts"
    create_topic(new_admin(bootstrap), topic, 1)
    t0 = sc.timestamp_base()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    produce(producer, topic, ({"value": v, "timestamp_ms": ts} for v, ts in sc.timestamp_records(t0)))
    producer.close()
    tp = TopicPartition(topic, 0)
    consumer = new_consumer(bootstrap)
    try:

        def lookup(ts: int) -> int | None:
            found = consumer.offsets_for_times({tp: ts}, timeout_ms=WAIT_MS)[tp]
            return None if found is None else found.offset  # None: no record at or after ts

        start = sc.check_offsets_for_times(lookup, t0)
        consumer.assign([tp])
        consumer.seek(tp, start)
        recs = read(consumer, sc.TIMESTAMP_RECORDS - start, "reading from the offset found for T0 + 50500")
    finally:
        consumer.close()
    sc.check_read_from_timestamp(recs, t0)


class GroupMember:
    """A group consumer polled without pause by its own thread, the way kafka-python expects to be driven.

    kafka-python 3.0.12 completes a JoinGroup/SyncGroup round trip only inside poll(): when the answer arrives
    while the member is outside poll(), the next poll() drops it and sends a new JoinGroup, and a leader's new
    JoinGroup starts another rebalance. Two members polled in turn by one thread are each outside poll() half
    the time and can rebalance forever (seen against both Spool and Apache Kafka); a thread per member that
    polls with a long timeout keeps each one inside poll() nearly all the time. KafkaConsumer is not
    thread-safe, so every other call on it is handed to that thread (call()).
    """

    def __init__(self, bootstrap: str, group: str, topic: str, name: str):
        self.name = name
        self._consumer = new_consumer(bootstrap, group)
        self._topic = topic
        self._lock = threading.Lock()
        self._records: list[Rec] = []
        self._partitions: set[int] = set()
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            subscribe(self._consumer, self._topic)
            while not self._stop.is_set():
                while not self._calls.empty():
                    fn, result = self._calls.get()
                    try:
                        result.set_result(fn(self._consumer))
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        result.set_exception(exc)
                got: list[Rec] = []
                # A long poll keeps the share of time spent outside poll() (see above) small.
                poll_into(self._consumer, got, timeout_ms=1000)
                with self._lock:
                    self._records.extend(got)
                    self._partitions = partitions_of(self._consumer)
        except BaseException as exc:  # noqa: BLE001 - reported by the next partitions()/records()
            self._error = exc
        finally:
            self._consumer.close(autocommit=False)

    def call(self, fn):
        """Runs fn(consumer) on the member's thread and returns its result."""
        result: Future = Future()
        self._calls.put((fn, result))
        return result.result(timeout=WAIT)

    def _check(self) -> None:
        if self._error is not None:
            raise CheckFailed(f"consumer {self.name} failed: {self._error!r}")

    def partitions(self) -> set[int]:
        self._check()
        with self._lock:
            return set(self._partitions)

    def records(self) -> list[Rec]:
        self._check()
        with self._lock:
            return list(self._records)

    def close(self) -> None:
        """Leaves the group (KafkaConsumer.close on the member's thread) and waits for the thread to end."""
        self._stop.set()
        self._thread.join(timeout=WAIT)
        if self._thread.is_alive():
            raise CheckFailed(f"consumer {self.name} did not close within {WAIT:.0f}s")
        self._check()

    def stop(self) -> None:
        """close() for cleanup paths: never raises (the thread is a daemon, so it cannot keep the peer alive)."""
        self._stop.set()
        self._thread.join(timeout=WAIT)


def group_rebalance(bootstrap: str, prefix: str) -> None:
    topic, group = f"{prefix}-grp", f"{prefix}-g"
    create_topic(new_admin(bootstrap), topic, sc.GROUP_PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    a = GroupMember(bootstrap, group, topic, "A")
    b = GroupMember(bootstrap, group, topic, "B")
    try:
        wait_for(
            "A and B to own disjoint, non-empty sets covering all 4 partitions",
            lambda: sc.assignment_split(a.partitions(), b.partitions()),
            interval=0.05,
        )
        pa, pb = a.partitions(), b.partitions()
        ok(f"assignments split: A {sorted(pa)}, B {sorted(pb)}")

        produce(producer, topic, ({"key": k, "value": k} for k in sc.FIRST_BATCH))
        wait_for(
            "A and B to receive the first 100 records",
            lambda: len(a.records()) + len(b.records()) >= len(sc.FIRST_BATCH),
            interval=0.05,
        )
        got_a, got_b = a.records(), b.records()
        sc.check_received_once(
            "first 100 records received exactly once by A and B together", sc.FIRST_BATCH, got_a + got_b
        )
        check(
            {r.partition for r in got_a} <= pa and {r.partition for r in got_b} <= pb,
            "each consumer received only records of its own partitions",
        )
        a.call(commit_positions)
        b.call(commit_positions)

        a.close()
        ok("A closed (left the group)")
        seen_by_b = len(b.records())
        wait_for("B to own all 4 partitions", lambda: b.partitions() == set(range(sc.GROUP_PARTITIONS)), interval=0.05)
        ok("B owns all 4 partitions")
        produce(producer, topic, ({"key": k, "value": k} for k in sc.SECOND_BATCH))
        wait_for(
            "B to receive the 40 new records",
            lambda: len(b.records()) - seen_by_b >= len(sc.SECOND_BATCH),
            interval=0.05,
        )
        # Re-delivered old records would precede the new ones of their partition; a short drain catches any
        # on a partition that got none of the 40.
        time.sleep(1.0)
        sc.check_received_once(
            "B received exactly the 40 new records and none of the first 100 again",
            sc.SECOND_BATCH,
            b.records()[seen_by_b:],
        )
    finally:
        producer.close()
        a.stop()
        b.stop()


def offsets_commit_fetch(bootstrap: str, prefix: str) -> None:
    topic, group = f"{prefix}-commit", f"{prefix}-g"
    create_topic(new_admin(bootstrap), topic, sc.COMMIT_PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    produce(
        producer,
        topic,
        (
            {"value": f"p{p}-{i}".encode(), "partition": p}
            for p in range(sc.COMMIT_PARTITIONS)
            for i in range(sc.COMMIT_RECORDS_PER_PARTITION)
        ),
    )
    producer.close()
    tps = {p: TopicPartition(topic, p) for p in range(sc.COMMIT_PARTITIONS)}

    first = new_consumer(bootstrap, group)
    try:
        subscribe(first, topic)
        read_meanwhile: list[Rec] = []  # records polled while joining; this consumer only commits
        wait_for(
            "the first consumer to be assigned both partitions",
            lambda: poll_into(first, read_meanwhile) or len(first.assignment()) == sc.COMMIT_PARTITIONS,
            interval=0,
        )
        first.commit({tps[p]: OffsetAndMetadata(offset, meta, -1) for p, (offset, meta) in sc.COMMITS.items()})
        ok("committed offset 3 (metadata m0) for partition 0 and 7 (m1) for partition 1")
        committed = {p: first.committed(tps[p], metadata=True, timeout_ms=WAIT_MS) for p in sc.COMMITS}
        check_equal(
            "committed() offsets and metadata",
            dict(sc.COMMITS),
            {p: (om.offset, om.metadata) for p, om in committed.items()},
        )
    finally:
        first.close(autocommit=False)

    second = new_consumer(bootstrap, group)
    try:
        subscribe(second, topic)
        got: list[Rec] = []
        wait_for(
            "the new consumer to read from both partitions",
            lambda: poll_into(second, got) or {r.partition for r in got} == set(tps),
            interval=0,
        )
    finally:
        second.close(autocommit=False)
    firsts = {p: min(r.offset for r in got if r.partition == p) for p in tps}
    check_equal("first offsets read by a new consumer of the group", {p: o for p, (o, _) in sc.COMMITS.items()}, firsts)


def admin_topics(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic = f"{prefix}-adm"
    create_topic(admin, topic, 2, {"retention.ms": sc.RETENTION_MS})
    check(topic in admin.list_topics(), f"{topic} is listed")

    def described_partitions() -> int:
        [desc] = admin.describe_topics([topic])
        return len(desc["partitions"])

    check_equal("partitions in describe_topics", 2, described_partitions())
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    check_equal("retention.ms in describe_configs", sc.RETENTION_MS, configs["topic"][topic]["retention.ms"]["value"])

    try:
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}}, timeout_ms=WAIT_MS)
        raise CheckFailed("creating the topic a second time succeeded; expected TOPIC_ALREADY_EXISTS")
    except TopicAlreadyExistsError:
        ok("creating it again fails with TOPIC_ALREADY_EXISTS")

    admin.create_partitions({topic: 4}, timeout_ms=WAIT_MS)
    wait_for("describe_topics to show 4 partitions", lambda: described_partitions() == 4)
    ok("described with 4 partitions after create_partitions")

    admin.delete_topics([topic], timeout_ms=WAIT_MS)
    wait_for(f"{topic} to disappear from the topic list", lambda: topic not in admin.list_topics())
    ok(f"{topic} no longer listed")
    [gone] = admin.describe_topics([topic])  # kafka-python's admin Metadata never auto-creates topics
    check_equal("metadata error code for the deleted topic (UNKNOWN_TOPIC_OR_PARTITION)", 3, gone["error_code"])


def admin_groups(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic, group = f"{prefix}-ag", f"{prefix}-g"
    create_topic(admin, topic, sc.ADMIN_GROUP_PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    produce(producer, topic, ({"value": b"x", "partition": p} for p in range(sc.ADMIN_GROUP_PARTITIONS)))
    producer.close()

    def listed() -> set[str]:
        return {g["group_id"] for g in admin.list_groups()}

    consumer = new_consumer(bootstrap, group)
    try:
        subscribe(consumer, topic)
        got: list[Rec] = []
        wait_for(
            "the consumer to own both partitions and read 1 record from each",
            lambda: poll_into(consumer, got) or len(got) == sc.ADMIN_GROUP_PARTITIONS,
            interval=0,
        )
        check_equal("partitions read", {0, 1}, {r.partition for r in got})
        commit_positions(consumer)

        check(group in listed(), f"list_groups contains {group}")
        desc = admin.describe_groups([group])[group]
        check_equal("group state while the consumer is a member", "Stable", desc["group_state"])
        check_equal("protocol type", "consumer", desc["protocol_type"])
        check_equal("members", 1, len(desc["members"]))
        # kafka-python decodes the assignment (ConsumerProtocolAssignment) and returns it as a dict.
        assignment = desc["members"][0]["member_assignment"]["assigned_partitions"]
        check_equal(
            "member assignment",
            {(topic, 0), (topic, 1)},
            {(a["topic"], p) for a in assignment for p in a["partitions"]},
        )
        offsets = admin.list_group_offsets({group: None})[group]
        check_equal(
            "group offsets listed by the admin API",
            {0: 1, 1: 1},
            {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic},
        )
    finally:
        consumer.close(autocommit=False)
    ok("consumer closed")
    wait_for(
        "describe to show the group Empty", lambda: admin.describe_groups([group])[group]["group_state"] == "Empty"
    )
    ok("group state Empty after the consumer closed")
    check_equal("delete_groups result", {group: "OK"}, admin.delete_groups([group]))
    wait_for(f"{group} to disappear from list_groups", lambda: group not in listed())
    ok(f"{group} deleted and no longer listed")


SCENARIOS = {
    "produce-codecs": produce_codecs,
    "produce-headers-nulls": produce_headers_nulls,
    "produce-idempotent": produce_idempotent,
    "consume-offsets": consume_offsets,
    "consume-timestamp": consume_timestamp,
    "group-rebalance": group_rebalance,
    "offsets-commit-fetch": offsets_commit_fetch,
    "admin-topics": admin_topics,
    "admin-groups": admin_groups,
}

if __name__ == "__main__":
    sys.exit(sc.main(CLIENT, SCENARIOS))
