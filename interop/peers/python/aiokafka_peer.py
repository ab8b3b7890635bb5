"""aiokafka (asyncio) peer program for the interop scenarios (interop/SCENARIOS.md).

    python aiokafka_peer.py --bootstrap HOST:PORT --scenario NAME --prefix PREFIX

Codecs: aiokafka compresses snappy, lz4 and zstd only with the optional package cramjam installed
(interop/requirements.txt); gzip is built in.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Awaitable, Callable, Iterable, TypeVar

import scenario_common as sc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.structs import OffsetAndMetadata
from scenario_common import WAIT, CheckFailed, NotSupported, Rec, check, check_equal, ok

CLIENT = "aiokafka"
WAIT_MS = int(WAIT * 1000)
T = TypeVar("T")


# --------------------------------------------------------------------------------------------------------------------
# Client plumbing
# --------------------------------------------------------------------------------------------------------------------


async def wait_for(what: str, probe: Callable[[], Awaitable[T]], timeout: float = WAIT) -> T:
    """Awaits `probe` until it returns something truthy; fails with the last result or error at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = await probe()
            if result:
                return result
            last = result
        except Exception as exc:  # noqa: BLE001 - reported at the deadline
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}; last result: {last!r}")
        await asyncio.sleep(0.05)


async def new_admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=WAIT_MS)
    await admin.start()
    return admin


async def new_producer(bootstrap: str, **extra: object) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=WAIT_MS, **extra)
    await producer.start()
    return producer


async def new_consumer(bootstrap: str, group: str | None = None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=WAIT_MS,
    )
    await consumer.start()
    return consumer


async def topic_partitions_led(admin: AIOKafkaAdminClient, name: str) -> int | None:
    """Partition count of `name` once every partition has a leader, else None (an all-topics Metadata request:
    aiokafka asks for named topics with allow_auto_topic_creation=true)."""
    for t in await admin.describe_topics():
        if t["topic"] == name and t["error_code"] == 0 and t["partitions"]:
            if all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"]):
                return len(t["partitions"])
    return None


async def create_topic(
    admin: AIOKafkaAdminClient, name: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    response = await admin.create_topics(
        [NewTopic(name, partitions, 1, topic_configs=configs or {})], timeout_ms=WAIT_MS
    )
    for topic, code, *_ in response.topic_errors:
        if code:
            raise for_code(code)(f"create_topics({topic})")
    await wait_for(
        f"metadata to show topic {name} with {partitions} led partitions",
        lambda: _equals(topic_partitions_led(admin, name), partitions),
    )
    ok(f"created topic {name} with {partitions} partitions")


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def produce(producer: AIOKafkaProducer, topic: str, records: Iterable[dict[str, object]]) -> None:
    """Sends every record (keyword arguments of AIOKafkaProducer.send) and fails on any delivery error."""
    futures = [await producer.send(topic, **record) for record in records]
    await producer.flush()
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    if errors:
        raise CheckFailed(f"producing to {topic}: {len(errors)} delivery errors, first: {errors[:3]}")
    ok(f"{len(futures)} records acknowledged by {topic}")


def to_rec(r) -> Rec:
    return Rec(r.partition, r.offset, r.key, r.value, tuple(r.headers or ()), r.timestamp)


async def poll_into(consumer: AIOKafkaConsumer, got: list[Rec], timeout_ms: int = 100) -> None:
    for batch in (await consumer.getmany(timeout_ms=timeout_ms)).values():
        got.extend(to_rec(r) for r in batch)


async def read(consumer: AIOKafkaConsumer, count: int, what: str) -> list[Rec]:
    """Polls until `count` records arrived (fails at the deadline with what it got)."""
    recs: list[Rec] = []
    deadline = time.monotonic() + WAIT
    while len(recs) < count:
        if time.monotonic() >= deadline:
            raise CheckFailed(f"{what}: read {len(recs)} of {count} records within {WAIT:.0f}s; last: {recs[-3:]}")
        await poll_into(consumer, recs, timeout_ms=500)
    return recs


def partitions_of(consumer: AIOKafkaConsumer) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


async def commit_positions(consumer: AIOKafkaConsumer) -> None:
    """Commits the position of every assigned partition and waits for the broker's answer."""
    offsets = {tp: await consumer.position(tp) for tp in consumer.assignment()}
    await consumer.commit(offsets)
    ok(f"committed {sorted((tp.partition, o) for tp, o in offsets.items())}")


# --------------------------------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------------------------------


async def produce_codecs(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-codecs"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, 1)
    finally:
        await admin.close()
    for codec in sc.CODECS:
        producer = await new_producer(bootstrap, linger_ms=5, compression_type=None if codec == "none" else codec)
        try:
            await produce(producer, topic, ({"key": k, "value": v} for k, v in sc.codec_records(codec)))
        finally:
            await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = await new_consumer(bootstrap)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        recs = await read(consumer, len(sc.CODECS) * sc.RECORDS_PER_CODEC, "reading the codecs topic")
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    sc.check_codecs_read_back(recs, end)


async def produce_headers_nulls(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-hdr"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, 1)
    finally:
        await admin.close()
    producer = await new_producer(bootstrap)
    try:
        await produce(producer, topic, ({"key": k, "value": v, "headers": list(h)} for k, v, h in sc.header_records()))
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = await new_consumer(bootstrap)
    try:
        consumer.assign([tp])
        consumer.seek(tp, 0)
        recs = await read(consumer, len(sc.header_records()), "reading the headers topic")
    finally:
        await consumer.stop()
    sc.check_header_records(recs)


async def produce_idempotent(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-idem"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, sc.IDEMPOTENT_PARTITIONS)
    finally:
        await admin.close()
    producer = await new_producer(bootstrap, enable_idempotence=True, acks="all")
    try:
        await produce(producer, topic, ({"key": k, "value": v} for k, v in sc.idempotent_records()))
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, p) for p in range(sc.IDEMPOTENT_PARTITIONS)]
    consumer = await new_consumer(bootstrap)
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        recs = await read(consumer, sc.IDEMPOTENT_RECORDS, "reading the idempotent topic")
        ends = {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    sc.check_idempotent_read_back(recs, ends)


async def consume_offsets(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-offsets"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, 1)
    finally:
        await admin.close()
    producer = await new_producer(bootstrap)
    try:
        await produce(producer, topic, ({"value": v} for v in sc.offsets_values()))
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = await new_consumer(bootstrap)
    try:
        earliest = (await consumer.beginning_offsets([tp]))[tp]
        latest = (await consumer.end_offsets([tp]))[tp]
        sc.check_watermarks(earliest, latest)
        consumer.assign([tp])
        consumer.seek(tp, sc.SEEK_TO)
        recs = await read(consumer, sc.OFFSETS_RECORDS - sc.SEEK_TO, "reading after the seek")
    finally:
        await consumer.stop()
    sc.check_read_from_seek(recs)


async def consume_timestamp(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-ts"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, 1)
    finally:
        await admin.close()
    t0 = sc.timestamp_base()
    producer = await new_producer(bootstrap)
    try:
        await produce(producer, topic, ({"value": v, "timestamp_ms": ts} for v, ts in sc.timestamp_records(t0)))
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    consumer = await new_consumer(bootstrap)
    try:
        found = {}
        for ts in (t0 + 50_500, t0, t0 + 200_000):
            answer = (await consumer.offsets_for_times({tp: ts}))[tp]
            found[ts] = None if answer is None else answer.offset  # None: no record at or after ts
        start = sc.check_offsets_for_times(found.__getitem__, t0)
        consumer.assign([tp])
        consumer.seek(tp, start)
        recs = await read(consumer, sc.TIMESTAMP_RECORDS - start, "reading from the offset found for T0 + 50500")
    finally:
        await consumer.stop()
    sc.check_read_from_timestamp(recs, t0)


async def group_rebalance(bootstrap: str, prefix: str) -> None:
    topic, group = f"{prefix}-grp", f"{prefix}-g"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, sc.GROUP_PARTITIONS)
    finally:
        await admin.close()
    a = await new_consumer(bootstrap, group)
    b = await new_consumer(bootstrap, group)
    producer = await new_producer(bootstrap)
    got_a: list[Rec] = []
    got_b: list[Rec] = []
    a_open = True
    try:
        a.subscribe([topic])
        b.subscribe([topic])

        async def split() -> bool:
            await asyncio.gather(poll_into(a, got_a), poll_into(b, got_b))
            return sc.assignment_split(partitions_of(a), partitions_of(b))

        await wait_for("A and B to own disjoint, non-empty sets covering all 4 partitions", split)
        ok(f"assignments split: A {sorted(partitions_of(a))}, B {sorted(partitions_of(b))}")

        await produce(producer, topic, ({"key": k, "value": k} for k in sc.FIRST_BATCH))

        async def first_batch_in() -> bool:
            return await split() and len(got_a) + len(got_b) >= len(sc.FIRST_BATCH)

        await wait_for("A and B to receive the first 100 records", first_batch_in)
        sc.check_received_once(
            "first 100 records received exactly once by A and B together", sc.FIRST_BATCH, got_a + got_b
        )
        check(
            {r.partition for r in got_a} <= partitions_of(a) and {r.partition for r in got_b} <= partitions_of(b),
            "each consumer received only records of its own partitions",
        )
        await commit_positions(a)
        await commit_positions(b)

        await a.stop()
        a_open = False
        ok("A closed (left the group)")
        got_b.clear()

        async def b_owns_all() -> bool:
            await poll_into(b, got_b)
            return partitions_of(b) == set(range(sc.GROUP_PARTITIONS))

        await wait_for("B to own all 4 partitions", b_owns_all)
        ok("B owns all 4 partitions")
        await produce(producer, topic, ({"key": k, "value": k} for k in sc.SECOND_BATCH))

        async def second_batch_in() -> bool:
            return await b_owns_all() and len(got_b) >= len(sc.SECOND_BATCH)

        await wait_for("B to receive the 40 new records", second_batch_in)
        # Re-delivered old records would precede the new ones of their partition; a short drain catches any
        # on a partition that got none of the 40.
        drain_until = time.monotonic() + 1.0
        while time.monotonic() < drain_until:
            await poll_into(b, got_b)
        sc.check_received_once(
            "B received exactly the 40 new records and none of the first 100 again", sc.SECOND_BATCH, got_b
        )
    finally:
        await producer.stop()
        if a_open:
            await a.stop()
        await b.stop()


async def offsets_commit_fetch(bootstrap: str, prefix: str) -> None:
    topic, group = f"{prefix}-commit", f"{prefix}-g"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, sc.COMMIT_PARTITIONS)
        producer = await new_producer(bootstrap)
        try:
            await produce(
                producer,
                topic,
                (
                    {"value": f"p{p}-{i}".encode(), "partition": p}
                    for p in range(sc.COMMIT_PARTITIONS)
                    for i in range(sc.COMMIT_RECORDS_PER_PARTITION)
                ),
            )
        finally:
            await producer.stop()
        tps = {p: TopicPartition(topic, p) for p in range(sc.COMMIT_PARTITIONS)}

        first = await new_consumer(bootstrap, group)
        try:
            first.subscribe([topic])
            read_meanwhile: list[Rec] = []  # records polled while joining; this consumer only commits

            async def assigned() -> bool:
                await poll_into(first, read_meanwhile)
                return len(first.assignment()) == sc.COMMIT_PARTITIONS

            await wait_for("the first consumer to be assigned both partitions", assigned)
            await first.commit({tps[p]: OffsetAndMetadata(offset, meta) for p, (offset, meta) in sc.COMMITS.items()})
            ok("committed offset 3 (metadata m0) for partition 0 and 7 (m1) for partition 1")
            # AIOKafkaConsumer.committed() returns the offset only; the metadata comes from the admin OffsetFetch.
            check_equal(
                "committed() offsets",
                {p: o for p, (o, _) in sc.COMMITS.items()},
                {p: await first.committed(tps[p]) for p in sc.COMMITS},
            )
            fetched = await admin.list_consumer_group_offsets(group, partitions=list(tps.values()))
            check_equal(
                "OffsetFetch (admin) offsets and metadata",
                dict(sc.COMMITS),
                {tp.partition: (om.offset, om.metadata) for tp, om in fetched.items()},
            )
        finally:
            await first.stop()
    finally:
        await admin.close()

    second = await new_consumer(bootstrap, group)
    got: list[Rec] = []
    try:
        second.subscribe([topic])

        async def both_started() -> bool:
            await poll_into(second, got)
            return {r.partition for r in got} == set(tps)

        await wait_for("the new consumer to read from both partitions", both_started)
    finally:
        await second.stop()
    firsts = {p: min(r.offset for r in got if r.partition == p) for p in tps}
    check_equal("first offsets read by a new consumer of the group", {p: o for p, (o, _) in sc.COMMITS.items()}, firsts)


async def admin_topics(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}-adm"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, 2, {"retention.ms": sc.RETENTION_MS})
        check(topic in await admin.list_topics(), f"{topic} is listed")
        check_equal("partitions in describe_topics", 2, await topic_partitions_led(admin, topic))

        [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [resource] = described.to_object()["resources"]
        check_equal("describe_configs error code", 0, resource["error_code"])
        entries = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        check_equal("retention.ms in describe_configs", sc.RETENTION_MS, entries.get("retention.ms"))

        again = await admin.create_topics([NewTopic(topic, 2, 1)], timeout_ms=WAIT_MS)
        codes = [code for _, code, *_ in again.topic_errors]
        check_equal("error of the second create (TOPIC_ALREADY_EXISTS)", [TopicAlreadyExistsError.errno], codes)

        await admin.create_partitions({topic: NewPartitions(4)}, timeout_ms=WAIT_MS)
        await wait_for("describe_topics to show 4 partitions", lambda: _equals(topic_partitions_led(admin, topic), 4))
        ok("described with 4 partitions after create_partitions")

        deleted = await admin.delete_topics([topic], timeout_ms=WAIT_MS)
        check_equal("delete_topics error codes", [0], [code for _, code, *_ in deleted.topic_error_codes])

        async def gone() -> bool:
            return topic not in await admin.list_topics()

        await wait_for(f"{topic} to disappear from the topic list", gone)
        # Not probed with a Metadata request naming the topic: aiokafka sends those with
        # allow_auto_topic_creation=true, which would re-create it on a broker with auto-creation on.
        ok(f"{topic} no longer listed")
    finally:
        await admin.close()


async def admin_groups(bootstrap: str, prefix: str) -> None:
    topic, group = f"{prefix}-ag", f"{prefix}-g"
    admin = await new_admin(bootstrap)
    try:
        await create_topic(admin, topic, sc.ADMIN_GROUP_PARTITIONS)
        producer = await new_producer(bootstrap)
        try:
            await produce(producer, topic, ({"value": b"x", "partition": p} for p in range(sc.ADMIN_GROUP_PARTITIONS)))
        finally:
            await producer.stop()

        async def describe() -> dict:
            [response] = await admin.describe_consumer_groups([group])
            [desc] = response.to_object()["groups"]
            return desc

        consumer = await new_consumer(bootstrap, group)
        try:
            consumer.subscribe([topic])
            got: list[Rec] = []

            async def read_both() -> bool:
                await poll_into(consumer, got)
                return len(got) == sc.ADMIN_GROUP_PARTITIONS

            await wait_for("the consumer to own both partitions and read 1 record from each", read_both)
            check_equal("partitions read", {0, 1}, {r.partition for r in got})
            await commit_positions(consumer)

            check(group in {g[0] for g in await admin.list_consumer_groups()}, f"list_consumer_groups contains {group}")
            desc = await describe()
            check_equal("group state while the consumer is a member", "Stable", desc["state"])
            check_equal("protocol type", "consumer", desc["protocol_type"])
            check_equal("members", 1, len(desc["members"]))
            # aiokafka returns the raw assignment bytes; its own consumer-protocol schema decodes them.
            assignment = ConsumerProtocol.ASSIGNMENT.decode(desc["members"][0]["member_assignment"])
            check_equal(
                "member assignment",
                {(topic, 0), (topic, 1)},
                {(tp.topic, tp.partition) for tp in assignment.partitions()},
            )
            offsets = await admin.list_consumer_group_offsets(group)
            check_equal(
                "group offsets listed by the admin API",
                {0: 1, 1: 1},
                {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == topic},
            )
        finally:
            await consumer.stop()
        ok("consumer closed")

        async def empty() -> bool:
            return (await describe())["state"] == "Empty"

        await wait_for("describe to show the group Empty", empty)
        ok("group state Empty after the consumer closed")
    finally:
        await admin.close()
    raise NotSupported(
        "deleting the group: AIOKafkaAdminClient (aiokafka 0.14.0) has no delete-consumer-groups "
        "method; every earlier step of admin-groups ran and held"
    )


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


def blocking(run: Callable[[str, str], Awaitable[None]]) -> Callable[[str, str], None]:
    """A scenario coroutine as the plain function scenario_common.main() calls (one event loop per run)."""
    return lambda bootstrap, prefix: asyncio.run(run(bootstrap, prefix))


if __name__ == "__main__":
    sys.exit(sc.main(CLIENT, {name: blocking(run) for name, run in SCENARIOS.items()}))
