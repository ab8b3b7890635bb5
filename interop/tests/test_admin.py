"""confluent-kafka AdminClient against spool broker."""

from __future__ import annotations

import pytest

from interop_helpers import CLIENT_TIMEOUT, unique, wait_for_topic, wait_until


def _result(future):
    import concurrent.futures

    try:
        return future.result(timeout=CLIENT_TIMEOUT)
    except concurrent.futures.TimeoutError:
        raise AssertionError(f"admin request got no answer within {CLIENT_TIMEOUT:.0f}s") from None


def _error_code(future):
    """The KafkaError code a failed admin future carries (fails if the future succeeded)."""
    from confluent_kafka import KafkaException

    try:
        value = _result(future)
    except KafkaException as exc:
        return exc.args[0].code(), str(exc.args[0])
    raise AssertionError(f"expected the request to fail, it succeeded with {value!r}")


def _topic_names(admin) -> set[str]:
    # list_topics() without a topic asks for all topics: it must not auto-create anything.
    return set(admin.list_topics(timeout=10).topics)


def test_create_list_partitions_delete(admin):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewPartitions, NewTopic

    topic = unique("admin-life")
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"})],
        operation_timeout=CLIENT_TIMEOUT,
        request_timeout=CLIENT_TIMEOUT,
    )
    assert _result(futures[topic]) is None

    wait_for_topic(admin, topic, 3)
    md = admin.list_topics(timeout=10)
    assert len(md.brokers) == 1, md.brokers
    [broker_id] = md.brokers
    parts = md.topics[topic].partitions
    assert sorted(parts) == [0, 1, 2]
    for p in parts.values():
        assert p.leader == broker_id and p.replicas == [broker_id] and p.isrs == [broker_id], p

    # Creating it again is TOPIC_ALREADY_EXISTS.
    again = admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1)], request_timeout=CLIENT_TIMEOUT
    )
    code, text = _error_code(again[topic])
    assert code == KafkaError.TOPIC_ALREADY_EXISTS, text

    # Grow to 5 partitions.
    grow = admin.create_partitions([NewPartitions(topic, 5)], request_timeout=CLIENT_TIMEOUT)
    assert _result(grow[topic]) is None
    wait_for_topic(admin, topic, 5)

    # Shrinking is INVALID_PARTITIONS.
    shrink = admin.create_partitions([NewPartitions(topic, 2)], request_timeout=CLIENT_TIMEOUT)
    code, text = _error_code(shrink[topic])
    assert code == KafkaError.INVALID_PARTITIONS, text
    wait_for_topic(admin, topic, 5)

    # Delete, and it disappears from the listing.
    deleted = admin.delete_topics([topic], operation_timeout=CLIENT_TIMEOUT, request_timeout=CLIENT_TIMEOUT)
    assert _result(deleted[topic]) is None
    wait_until(f"{topic} to disappear from list_topics", lambda: topic not in _topic_names(admin))

    # Deleting what is not there is UNKNOWN_TOPIC_OR_PART.
    missing = admin.delete_topics([topic], request_timeout=CLIENT_TIMEOUT)
    code, text = _error_code(missing[topic])
    assert code == KafkaError.UNKNOWN_TOPIC_OR_PART, text


@pytest.mark.parametrize(
    "config",
    [
        {"retention.ms": "not-a-number"},
        {"cleanup.policy": "bogus"},
        {"no.such.topic.config": "1"},
    ],
    ids=["retention.ms=not-a-number", "cleanup.policy=bogus", "unknown-config-name"],
)
def test_create_topic_with_invalid_config_is_rejected(admin, config):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import NewTopic

    topic = unique("admin-badcfg")
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config=config)], request_timeout=CLIENT_TIMEOUT
    )
    code, text = _error_code(futures[topic])
    assert code == KafkaError.INVALID_CONFIG, f"expected INVALID_CONFIG, got {code}: {text}"
    assert topic not in _topic_names(admin), "the rejected topic was created anyway"


def test_describe_configs_reports_created_config(admin):
    from confluent_kafka.admin import ConfigResource, ConfigSource, NewTopic, ResourceType

    topic = unique("admin-desc")
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config={"retention.ms": "3600000"})],
        request_timeout=CLIENT_TIMEOUT,
    )
    assert _result(futures[topic]) is None
    wait_for_topic(admin, topic, 1)

    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = _result(admin.describe_configs([resource], request_timeout=CLIENT_TIMEOUT)[resource])
    assert "retention.ms" in configs, f"retention.ms not described; got {sorted(configs)}"
    entry = configs["retention.ms"]
    assert entry.value == "3600000", entry
    dynamic = ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert entry.source in (dynamic, dynamic.value), f"source {entry.source} for a topic override, expected {dynamic}"
    # Defaults are described too (kafka-configs and UIs print them).
    assert "cleanup.policy" in configs, f"cleanup.policy default not described; got {sorted(configs)}"
    assert configs["cleanup.policy"].value == "delete", configs["cleanup.policy"]
