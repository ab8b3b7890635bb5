"""kcat (librdkafka from Debian's package) against spool broker."""

from __future__ import annotations

import json

import pytest

from interop_helpers import create_topic, describe, kcat, unique, wait_until

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kcat_metadata(bootstrap: str, topic: str | None = None, *extra: str) -> dict:
    args = ["-L", "-J", "-m", "10"]
    if topic is not None:
        args += ["-t", topic]
    proc = kcat(bootstrap, *args, *extra, timeout=30)
    assert proc.returncode == 0, describe(proc)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"kcat -L -J printed no JSON ({exc})\n{describe(proc)}") from None


def topic_entry(md: dict, topic: str) -> dict | None:
    for t in md.get("topics", []):
        if t.get("topic") == topic:
            return t
    return None


def ready_topic(md: dict, topic: str, partitions: int) -> dict | None:
    """The topic's metadata once it has no error and every partition has a leader, else None."""
    t = topic_entry(md, topic)
    if t is None or t.get("error") or len(t.get("partitions", [])) != partitions:
        return None
    if any(p.get("error") or p.get("leader", -1) < 0 for p in t["partitions"]):
        return None
    return t


def check_broker_listed(md: dict, bootstrap: str) -> int:
    brokers = md.get("brokers", [])
    assert len(brokers) == 1, f"expected exactly one broker in metadata, got {brokers}"
    assert brokers[0]["name"] == bootstrap, (
        f"broker advertises {brokers[0]['name']!r}, clients connect to {bootstrap!r}"
    )
    return brokers[0]["id"]


def test_kcat_lists_broker(bootstrap):
    md = kcat_metadata(bootstrap)
    check_broker_listed(md, bootstrap)
    assert md.get("originating_broker", {}).get("id") == md["brokers"][0]["id"], md
    assert isinstance(md.get("topics"), list), md


def check_created_topic_listed(bootstrap: str, topic: str, partitions: int) -> None:
    t = wait_until(
        f"kcat -L to show {topic} with {partitions} led partitions",
        lambda: ready_topic(kcat_metadata(bootstrap, topic), topic, partitions),
    )
    md = kcat_metadata(bootstrap)  # all topics: the new one must be in the full listing too
    broker_id = check_broker_listed(md, bootstrap)
    assert ready_topic(md, topic, partitions), f"{topic} missing from full listing: {md}"
    assert sorted(p["partition"] for p in t["partitions"]) == list(range(partitions))
    for p in t["partitions"]:
        assert p["leader"] == broker_id, p
        assert [r["id"] for r in p["replicas"]] == [broker_id], p
        assert [r["id"] for r in p["isrs"]] == [broker_id], p


def test_kcat_lists_topic_created_by_admin_client(bootstrap):
    topic = unique("kcat-md-created")
    create_topic(bootstrap, topic, 3)
    check_created_topic_listed(bootstrap, topic, 3)


def test_kcat_metadata_auto_creates_topic(bootstrap):
    topic = unique("kcat-md-auto")
    md = kcat_metadata(bootstrap)
    assert topic_entry(md, topic) is None
    # Metadata for a named topic with allow_auto_topic_creation=true creates it (default 1 partition).
    t = wait_until(
        f"kcat -L -t {topic} to auto-create the topic",
        lambda: ready_topic(kcat_metadata(bootstrap, topic, "-X", "allow.auto.create.topics=true"), topic, 1),
    )
    assert t["partitions"][0]["partition"] == 0
    assert ready_topic(kcat_metadata(bootstrap), topic, 1), "auto-created topic missing from full listing"


def sample_lines(n: int = 30) -> list[tuple[str, str]]:
    keys = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "golf"]
    out = []
    for i in range(n):
        value = f"value-{i:03d} with spaces:and:colons " + "x" * (i * 37 % 300)
        out.append((keys[i % len(keys)], value))
    return out


def kcat_consume(bootstrap: str, topic: str, *extra: str) -> list[dict]:
    proc = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-J", *extra, timeout=60)
    assert proc.returncode == 0, describe(proc)
    msgs = []
    for line in proc.stdout.decode("utf-8").splitlines():
        if line.startswith("{"):
            msgs.append(json.loads(line))
    return msgs


def check_per_partition_order(sent: list[tuple[str, str]], msgs: list[dict]) -> None:
    got = [(m["key"], m["payload"]) for m in msgs]
    assert sorted(got) == sorted(sent), (
        f"sent {len(sent)} records, read {len(got)}; missing {sorted(set(sent) - set(got))[:5]}, "
        f"unexpected {sorted(set(got) - set(sent))[:5]}"
    )
    by_part: dict[int, list[dict]] = {}
    for m in msgs:
        by_part.setdefault(m["partition"], []).append(m)
    key_part: dict[str, int] = {}
    for p, ms in by_part.items():
        offsets = [m["offset"] for m in ms]
        assert offsets == list(range(len(ms))), f"partition {p}: offsets {offsets} are not 0..{len(ms) - 1} in order"
        for m in ms:
            prev = key_part.setdefault(m["key"], p)
            assert prev == p, f"key {m['key']!r} found in partitions {prev} and {p}"
        keys_here = {m["key"] for m in ms}
        expected = [kv for kv in sent if kv[0] in keys_here]
        assert [(m["key"], m["payload"]) for m in ms] == expected, f"partition {p}: order differs from produce order"


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produce_consume(bootstrap, codec):
    topic = unique(f"kcat-{codec}")
    create_topic(bootstrap, topic, 3)
    sent = sample_lines()
    payload = "".join(f"{k}:{v}\n" for k, v in sent).encode()
    proc = kcat(
        bootstrap,
        "-P",
        "-t",
        topic,
        "-K:",
        "-X",
        f"compression.codec={codec}",
        "-X",
        "linger.ms=50",
        "-X",
        "message.timeout.ms=30000",
        input=payload,
        timeout=60,
    )
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0 and "ERROR" not in stderr and "failed" not in stderr.lower(), describe(proc)

    msgs = kcat_consume(bootstrap, topic)
    check_per_partition_order(sent, msgs)
    assert all(m["topic"] == topic for m in msgs)
    assert len({m["partition"] for m in msgs}) > 1, "7 keys over 3 partitions all landed in one partition"
