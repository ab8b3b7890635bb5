"""confluent-kafka (Python binding of librdkafka) peer program for the interop scenarios (interop/SCENARIOS.md).

python confluent_peer.py --bootstrap HOST:PORT --scenario NAME --prefix PREFIX
"""

from __future__ import annotations

import sys
import time
from typing import Iterable

import scenario_common as sc
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)
from scenario_common import WAIT, CheckFailed, Rec, check, check_equal, ok, wait_for

CLIENT = "confluent-kafka (Python)"


# --------------------------------------------------------------------------------------------------------------------
# Client plumbing
# --------------------------------------------------------------------------------------------------------------------


def base_conf(bootstrap: str) -> dict[str, object]:
    # The broker is reached through an IPv4 address; without this librdkafka may also try ::1 for "localhost".
    return {"bootstrap.servers": bootstrap, "broker.address.family": "v4"}


def new_admin(bootstrap: str) -> AdminClient:
    # The admin client is a librdkafka producer underneath, whose metadata requests may auto-create topics by
    # default: that would resurrect the topic admin-topics deletes.
    return AdminClient({**base_conf(bootstrap), "allow.auto.create.topics": False})


def new_consumer(bootstrap: str, group: str, **extra: object) -> Consumer:
    conf = {**base_conf(bootstrap), "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    conf.update(extra)
    return Consumer(conf)


def topic_ready(admin: AdminClient, name: str, partitions: int) -> bool:
    t = admin.list_topics(timeout=10).topics.get(name)
    return (
        t is not None
        and t.error is None
        and len(t.partitions) == partitions
        and all(p.error is None and p.leader >= 0 for p in t.partitions.values())
    )


def create_topic(admin: AdminClient, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})], request_timeout=WAIT
    )
    futures[name].result(timeout=WAIT)
    wait_for(
        f"metadata to show topic {name} with {partitions} led partitions", lambda: topic_ready(admin, name, partitions)
    )
    ok(f"created topic {name} with {partitions} partitions")


def produce(producer: Producer, topic: str, records: Iterable[dict[str, object]]) -> None:
    """Sends every record (keyword arguments of Producer.produce), flushes, and fails on any delivery error."""
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg) -> None:
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")

    count = 0
    for record in records:
        producer.produce(topic, on_delivery=on_delivery, **record)
        count += 1
    remaining = producer.flush(WAIT)
    if remaining or errors:
        raise CheckFailed(
            f"producing to {topic}: {remaining} records not delivered within {WAIT:.0f}s, delivery errors: {errors[:5]}"
        )
    ok(f"{count} records acknowledged by {topic}")


def to_rec(msg) -> Rec:
    return Rec(msg.partition(), msg.offset(), msg.key(), msg.value(), tuple(msg.headers() or ()), msg.timestamp()[1])


def poll_one(consumer: Consumer, timeout: float) -> Rec | None:
    msg = consumer.poll(timeout)
    if msg is None:
        return None
    if msg.error():
        if msg.error().code() == KafkaError._PARTITION_EOF:
            return None
        raise KafkaException(msg.error())
    return to_rec(msg)


def poll_into(consumer: Consumer, got: list[Rec]) -> None:
    """One short poll; a record, if any, is appended to `got` (for wait_for probes that must keep polling)."""
    rec = poll_one(consumer, 0.1)
    if rec is not None:
        got.append(rec)


def read(consumer: Consumer, count: int, what: str) -> list[Rec]:
    """Polls until `count` records arrived (fails at the deadline with what it got)."""
    recs: list[Rec] = []
    deadline = time.monotonic() + WAIT
    while len(recs) < count:
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{what}: read {len(recs)} of {count} records within {WAIT:.0f}s; last: {recs[-3:]}")
        rec = poll_one(consumer, 0.5)
        if rec is not None:
            recs.append(rec)
    return recs


def commit_positions(consumer: Consumer) -> None:
    """Synchronously commits the position of every assigned partition that has one."""
    positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
    if positions:
        for tp in consumer.commit(offsets=positions, asynchronous=False):
            if tp.error is not None:
                raise CheckFailed(f"commit of {tp}: {tp.error}")
    ok(f"committed {[(tp.partition, tp.offset) for tp in positions]}")


def partitions_of(consumer: Consumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


# --------------------------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------------------------


def produce_codecs(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic = f"{prefix}-codecs"
    create_topic(admin, topic, 1)
    for codec in sc.CODECS:
        producer = Producer({**base_conf(bootstrap), "compression.type": codec, "linger.ms": 5})
        produce(producer, topic, ({"key": k, "value": v} for k, v in sc.codec_records(codec)))
    consumer = new_consumer(bootstrap, f"{prefix}-reader")
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        recs = read(consumer, len(sc.CODECS) * sc.RECORDS_PER_CODEC, "reading the codecs topic")
        _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        consumer.close()
    sc.check_codecs_read_back(recs, end)


def produce_headers_nulls(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic = f"{prefix}-hdr"
    create_topic(admin, topic, 1)
    producer = Producer(base_conf(bootstrap))
    produce(producer, topic, ({"key": k, "value": v, "headers": list(h)} for k, v, h in sc.header_records()))
    consumer = new_consumer(bootstrap, f"{prefix}-reader")
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        recs = read(consumer, len(sc.header_records()), "reading the headers topic")
    finally:
        consumer.close()
    sc.check_header_records(recs)


def produce_idempotent(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic = f"{prefix}-idem"
    create_topic(admin, topic, sc.IDEMPOTENT_PARTITIONS)
    producer = Producer({**base_conf(bootstrap), "enable.idempotence": True, "acks": "all"})
    produce(producer, topic, ({"key": k, "value": v} for k, v in sc.idempotent_records()))
    consumer = new_consumer(bootstrap, f"{prefix}-reader")
    partitions = range(sc.IDEMPOTENT_PARTITIONS)
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        recs = read(consumer, sc.IDEMPOTENT_RECORDS, "reading the idempotent topic")
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1] for p in partitions
        }
    finally:
        consumer.close()
    sc.check_idempotent_read_back(recs, ends)


def consume_offsets(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic = f"{prefix}-offsets"
    create_topic(admin, topic, 1)
    produce(Producer(base_conf(bootstrap)), topic, ({"value": v} for v in sc.offsets_values()))
    tp = TopicPartition(topic, 0)
    earliest = admin.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=WAIT)[tp].result(WAIT).offset
    latest = admin.list_offsets({tp: OffsetSpec.latest()}, request_timeout=WAIT)[tp].result(WAIT).offset
    sc.check_watermarks(earliest, latest)
    consumer = new_consumer(bootstrap, f"{prefix}-reader")
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        consumer.seek(TopicPartition(topic, 0, sc.SEEK_TO))
        recs = read(consumer, sc.OFFSETS_RECORDS - sc.SEEK_TO, "reading after the seek")
    finally:
        consumer.close()
    sc.check_read_from_seek(recs)


def consume_timestamp(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic = f"{prefix}-ts"
    create_topic(admin, topic, 1)
    t0 = sc.timestamp_base()
    produce(
        Producer(base_conf(bootstrap)), topic, ({"value": v, "timestamp": ts} for v, ts in sc.timestamp_records(t0))
    )
    consumer = new_consumer(bootstrap, f"{prefix}-reader")
    try:

        def lookup(ts: int) -> int | None:
            [found] = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=WAIT)
            if found.error is not None:
                raise CheckFailed(f"offsets_for_times({ts}): {found.error}")
            return None if found.offset < 0 else found.offset  # -1: no record at or after ts (OFFSET_END)

        start = sc.check_offsets_for_times(lookup, t0)
        consumer.assign([TopicPartition(topic, 0, start)])
        recs = read(consumer, sc.TIMESTAMP_RECORDS - start, "reading from the offset found for T0 + 50500")
    finally:
        consumer.close()
    sc.check_read_from_timestamp(recs, t0)


def group_rebalance(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic, group = f"{prefix}-grp", f"{prefix}-g"
    create_topic(admin, topic, sc.GROUP_PARTITIONS)
    a = new_consumer(bootstrap, group)
    b = new_consumer(bootstrap, group)
    got_a: list[Rec] = []
    got_b: list[Rec] = []

    def poll_both() -> None:
        poll_into(a, got_a)
        poll_into(b, got_b)

    try:
        a.subscribe([topic])
        b.subscribe([topic])

        def split() -> bool:
            poll_both()
            return sc.assignment_split(partitions_of(a), partitions_of(b))

        wait_for("A and B to own disjoint, non-empty sets covering all 4 partitions", split, interval=0)
        ok(f"assignments split: A {sorted(partitions_of(a))}, B {sorted(partitions_of(b))}")

        produce(Producer(base_conf(bootstrap)), topic, ({"key": k, "value": k} for k in sc.FIRST_BATCH))
        wait_for(
            "A and B to receive the first 100 records",
            lambda: poll_both() or len(got_a) + len(got_b) >= len(sc.FIRST_BATCH),
            interval=0,
        )
        sc.check_received_once(
            "first 100 records received exactly once by A and B together", sc.FIRST_BATCH, got_a + got_b
        )
        check(
            {r.partition for r in got_a} <= partitions_of(a) and {r.partition for r in got_b} <= partitions_of(b),
            "each consumer received only records of its own partitions",
        )
        commit_positions(a)
        commit_positions(b)

        a.close()
        ok("A closed (left the group)")
        got_b.clear()

        def b_owns_all() -> bool:
            poll_into(b, got_b)
            return partitions_of(b) == set(range(sc.GROUP_PARTITIONS))

        wait_for("B to own all 4 partitions", b_owns_all, interval=0)
        ok("B owns all 4 partitions")
        produce(Producer(base_conf(bootstrap)), topic, ({"key": k, "value": k} for k in sc.SECOND_BATCH))
        wait_for(
            "B to receive the 40 new records", lambda: b_owns_all() and len(got_b) >= len(sc.SECOND_BATCH), interval=0
        )
        # Re-delivered old records would precede the new ones of their partition; a short drain catches any
        # on a partition that got none of the 40.
        drain_until = time.monotonic() + 1.0
        while time.monotonic() < drain_until:
            poll_into(b, got_b)
        sc.check_received_once(
            "B received exactly the 40 new records and none of the first 100 again", sc.SECOND_BATCH, got_b
        )
    finally:
        for consumer in (a, b):
            try:
                consumer.close()
            except RuntimeError:  # already closed
                pass


def offsets_commit_fetch(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic, group = f"{prefix}-commit", f"{prefix}-g"
    create_topic(admin, topic, sc.COMMIT_PARTITIONS)
    produce(
        Producer(base_conf(bootstrap)),
        topic,
        (
            {"value": f"p{p}-{i}".encode(), "partition": p}
            for p in range(sc.COMMIT_PARTITIONS)
            for i in range(sc.COMMIT_RECORDS_PER_PARTITION)
        ),
    )
    wanted = [TopicPartition(topic, p, offset, metadata=meta) for p, (offset, meta) in sc.COMMITS.items()]

    first = new_consumer(bootstrap, group)
    try:
        first.subscribe([topic])
        read_meanwhile: list[Rec] = []  # records polled while joining; this consumer only commits
        wait_for(
            "the first consumer to be assigned both partitions",
            lambda: poll_into(first, read_meanwhile) or len(first.assignment()) == sc.COMMIT_PARTITIONS,
            interval=0,
        )
        for tp in first.commit(offsets=wanted, asynchronous=False):
            if tp.error is not None:
                raise CheckFailed(f"commit of {tp}: {tp.error}")
        ok("committed offset 3 (metadata m0) for partition 0 and 7 (m1) for partition 1")
        committed = first.committed([TopicPartition(topic, p) for p in sc.COMMITS], timeout=WAIT)
        check_equal(
            "committed() offsets and metadata",
            {p: c for p, c in sc.COMMITS.items()},
            {tp.partition: (tp.offset, tp.metadata) for tp in committed},
        )
    finally:
        first.close()

    second = new_consumer(bootstrap, group)
    try:
        second.subscribe([topic])
        firsts: dict[int, int] = {}

        def both_started() -> bool:
            rec = poll_one(second, 0.1)
            if rec is not None:
                firsts.setdefault(rec.partition, rec.offset)
            return len(firsts) == sc.COMMIT_PARTITIONS

        wait_for("the new consumer to read from both partitions", both_started, interval=0)
    finally:
        second.close()
    check_equal("first offsets read by a new consumer of the group", {p: o for p, (o, _) in sc.COMMITS.items()}, firsts)


def admin_topics(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic = f"{prefix}-adm"
    create_topic(admin, topic, 2, {"retention.ms": sc.RETENTION_MS})
    check(topic in admin.list_topics(timeout=10).topics, f"{topic} is listed")

    def described_partitions() -> int:
        [desc] = admin.describe_topics(TopicCollection([topic]), request_timeout=WAIT).values()
        return len(desc.result(WAIT).partitions)

    check_equal("partitions in describe_topics", 2, described_partitions())
    [configs] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=WAIT).values()
    check_equal("retention.ms in describe_configs", sc.RETENTION_MS, configs.result(WAIT)["retention.ms"].value)

    again = admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)], request_timeout=WAIT)
    try:
        again[topic].result(WAIT)
        raise CheckFailed("creating the topic a second time succeeded; expected TOPIC_ALREADY_EXISTS")
    except KafkaException as exc:
        check_equal("error of the second create", KafkaError.TOPIC_ALREADY_EXISTS, exc.args[0].code())

    admin.create_partitions([NewPartitions(topic, 4)], request_timeout=WAIT)[topic].result(WAIT)
    wait_for("describe_topics to show 4 partitions", lambda: described_partitions() == 4)
    ok("described with 4 partitions after create_partitions")

    admin.delete_topics([topic], request_timeout=WAIT)[topic].result(WAIT)
    wait_for(f"{topic} to disappear from the topic list", lambda: topic not in admin.list_topics(timeout=10).topics)
    ok(f"{topic} no longer listed")
    named = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
    check(
        named is not None and named.error is not None and named.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART,
        "metadata for the deleted topic answers UNKNOWN_TOPIC_OR_PARTITION",
        f"seen {named and named.error}",
    )


def admin_groups(bootstrap: str, prefix: str) -> None:
    admin = new_admin(bootstrap)
    topic, group = f"{prefix}-ag", f"{prefix}-g"
    create_topic(admin, topic, sc.ADMIN_GROUP_PARTITIONS)
    produce(
        Producer(base_conf(bootstrap)),
        topic,
        ({"value": b"x", "partition": p} for p in range(sc.ADMIN_GROUP_PARTITIONS)),
    )

    def describe():
        [fut] = admin.describe_consumer_groups([group], request_timeout=WAIT).values()
        return fut.result(WAIT)

    def listed() -> set[str]:
        return {g.group_id for g in admin.list_consumer_groups(request_timeout=WAIT).result(WAIT).valid}

    consumer = new_consumer(bootstrap, group)
    try:
        consumer.subscribe([topic])
        got: list[Rec] = []
        wait_for(
            "the consumer to own both partitions and read 1 record from each",
            lambda: poll_into(consumer, got) or len(got) == sc.ADMIN_GROUP_PARTITIONS,
            interval=0,
        )
        check_equal("partitions read", {0, 1}, {r.partition for r in got})
        commit_positions(consumer)

        check(group in listed(), f"list_consumer_groups contains {group}")
        desc = describe()
        check_equal("group state while the consumer is a member", ConsumerGroupState.STABLE, desc.state)
        # librdkafka reports protocol type "consumer" as is_simple_consumer_group=False (empty protocol type: True).
        check_equal("is_simple_consumer_group (protocol type 'consumer')", False, desc.is_simple_consumer_group)
        check_equal("members", 1, len(desc.members))
        check_equal(
            "member assignment",
            {(topic, 0), (topic, 1)},
            {(tp.topic, tp.partition) for tp in desc.members[0].assignment.topic_partitions},
        )
        [offsets] = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=WAIT
        ).values()
        check_equal(
            "group offsets listed by the admin API",
            {0: 1, 1: 1},
            {tp.partition: tp.offset for tp in offsets.result(WAIT).topic_partitions if tp.topic == topic},
        )
    finally:
        consumer.close()
    ok("consumer closed")
    wait_for("describe to show the group Empty", lambda: describe().state == ConsumerGroupState.EMPTY)
    ok("group state Empty after the consumer closed")
    admin.delete_consumer_groups([group], request_timeout=WAIT)[group].result(WAIT)
    wait_for(f"{group} to disappear from list_consumer_groups", lambda: group not in listed())
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
