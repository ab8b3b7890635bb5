"""Restart and crash recovery: private brokers on one data dir, one after the other."""

from __future__ import annotations

import pytest

from interop_helpers import (
    Produced,
    admin_client,
    check_consumed_matches,
    check_key_partitioning_and_order,
    consume_all,
    create_topic,
    new_producer,
    produce_all,
    unique,
    wait_for_topic,
)

pytestmark = pytest.mark.slow


def _records(prefix: str, n: int) -> list[Produced]:
    return [
        Produced(b"key-%d" % (i % 13), b"%s-%d-" % (prefix.encode(), i) + b"p" * (i % 200), [("n", b"%d" % i)])
        for i in range(n)
    ]


def _next_offsets(records: list[Produced]) -> dict[int, int]:
    nxt: dict[int, int] = {}
    for r in records:
        nxt[r.partition] = max(nxt.get(r.partition, 0), r.offset + 1)
    return nxt


def test_restart_after_sigterm_keeps_everything(broker_factory, tmp_path):
    data = tmp_path / "data"
    first = broker_factory(data, name="before-restart")
    topic = unique("restart")
    create_topic(first.bootstrap, topic, 2)
    records = _records("before", 100)
    produce_all(new_producer(first.bootstrap, {"compression.type": "lz4"}), topic, records, flush_every=30)
    check_key_partitioning_and_order(records)
    first.stop_ok()

    second = broker_factory(data, name="after-restart")
    wait_for_topic(admin_client(second.bootstrap), topic, 2)
    check_consumed_matches(records, consume_all(second.bootstrap, topic, [0, 1]))

    # New records continue the old offsets.
    more = _records("after", 20)
    produce_all(new_producer(second.bootstrap), topic, more)
    check_key_partitioning_and_order(more, first_offsets=_next_offsets(records))
    check_consumed_matches(records + more, consume_all(second.bootstrap, topic, [0, 1]))


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_kill9_after_acks_all_loses_nothing(broker_factory, tmp_path, codec):
    data = tmp_path / "data"
    first = broker_factory(data, name="before-kill9")
    topic = unique(f"kill9-{codec}")
    create_topic(first.bootstrap, topic, 3)
    records = _records("acked", 300)
    produce_all(new_producer(first.bootstrap, {"compression.type": codec}), topic, records, flush_every=40)
    check_key_partitioning_and_order(records)
    first.kill9()  # every record above was acknowledged with acks=all

    second = broker_factory(data, name="after-kill9")
    wait_for_topic(admin_client(second.bootstrap), topic, 3)
    check_consumed_matches(records, consume_all(second.bootstrap, topic, [0, 1, 2]))

    more = _records("after", 10)
    produce_all(new_producer(second.bootstrap), topic, more)
    check_key_partitioning_and_order(more, first_offsets=_next_offsets(records))
