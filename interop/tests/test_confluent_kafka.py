"""confluent-kafka (librdkafka bundled in the PyPI wheel) producer and consumer against spool broker."""

from __future__ import annotations

import time

import pytest

from interop_helpers import (
    CLIENT_TIMEOUT,
    Produced,
    check_consumed_matches,
    check_key_partitioning_and_order,
    client_conf,
    consume_all,
    create_topic,
    new_producer,
    produce_all,
    unique,
)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def sample_records(n: int = 60) -> list[Produced]:
    keys = [b"user-1", b"user-2", b"user-3", b"\x00binary\xffkey", b"user-5"]
    out = []
    for i in range(n):
        key = None if i % 11 == 5 else keys[i % len(keys)]
        if i % 9 == 4:
            value = None  # tombstone / null value
        elif i % 7 == 3:
            value = b""  # empty, not null
        elif i % 10 == 0:
            value = (b"compressible-%d " % i) * 800  # ~15 KB, so codecs have work to do
        else:
            value = b"value-%d-\x00\x01\xfe\xff" % i
        if i % 3 == 0:
            headers = None
        elif i % 3 == 1:
            headers = [("trace-id", b"t-%d" % i), ("empty", b""), ("null", None), ("dup", b"a"), ("dup", b"b")]
        else:
            headers = [("only", b"one")]
        out.append(Produced(key, value, headers))
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_produce_then_assign_consume(bootstrap, codec):
    topic = unique(f"ck-{codec}")
    create_topic(bootstrap, topic, 3)
    producer = new_producer(bootstrap, {"compression.type": codec, "linger.ms": 20})
    records = sample_records()
    produce_all(producer, topic, records, flush_every=25)

    check_key_partitioning_and_order(records)
    assert len({r.partition for r in records}) > 1, "all records landed in one partition of three"
    consumed = consume_all(bootstrap, topic, [0, 1, 2])
    check_consumed_matches(records, consumed)


def test_explicit_partitions_and_timestamps(bootstrap):
    topic = unique("ck-explicit")
    create_topic(bootstrap, topic, 2)
    producer = new_producer(bootstrap)
    base = int(time.time() * 1000) - 3_600_000
    records = [Produced(b"k%d" % i, b"v%d" % i, None, timestamp=base + i) for i in range(10)]
    for i, r in enumerate(records):
        producer.produce(
            topic, key=r.key, value=r.value, partition=i % 2, timestamp=r.timestamp, on_delivery=r.on_delivery
        )
    assert producer.flush(CLIENT_TIMEOUT) == 0
    assert all(r.error is None for r in records), [r.error for r in records]
    assert [r.partition for r in records] == [i % 2 for i in range(10)]
    check_key_partitioning_and_order(records)
    check_consumed_matches(records, consume_all(bootstrap, topic, [0, 1]))


def test_offsets_for_times_and_watermarks(bootstrap):
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    topic = unique("ck-times")
    create_topic(bootstrap, topic, 1)
    base = int(time.time() * 1000) - 3_600_000
    # Two batches of five: timestamps base, base+1000, ..., base+9000 at offsets 0..9.
    records = [Produced(b"k", b"v%d" % i, None, timestamp=base + 1000 * i) for i in range(10)]
    producer = new_producer(bootstrap, {"linger.ms": 50})
    produce_all(producer, topic, records, flush_every=5)
    assert [r.offset for r in records] == list(range(10))

    consumer = Consumer(client_conf(bootstrap, {"group.id": unique("times"), "enable.auto.commit": False}))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=CLIENT_TIMEOUT)
        assert (low, high) == (0, 10)

        cases = {
            base - 60_000: 0,  # before everything: first offset
            base: 0,  # exact first timestamp
            base + 3_500: 4,  # between records, inside the first batch
            base + 4_000: 4,  # exact, last of the first batch
            base + 6_500: 7,  # inside the second batch
            base + 9_000: 9,  # exact last timestamp
            base + 60_000: OFFSET_END,  # after everything: no such offset (-1)
        }
        got = {}
        for ts, _want in cases.items():
            [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=CLIENT_TIMEOUT)
            assert tp.error is None, f"offsets_for_times({ts - base:+d}ms): {tp.error}"
            got[ts] = tp.offset
        wrong = {ts - base: (got[ts], want) for ts, want in cases.items() if got[ts] != want}
        assert not wrong, f"offsets_for_times (ms after base: (got, expected)): {wrong}"
    finally:
        consumer.close()
    check_consumed_matches(records, consume_all(bootstrap, topic, [0]))
