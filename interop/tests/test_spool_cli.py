"""The spool CLI client and kcat exchange records through spool broker."""

from __future__ import annotations

from interop_helpers import describe, kcat, spool, unique
from test_kcat import check_created_topic_listed, kcat_consume


def test_spool_topics_create_then_kcat_lists_it(bootstrap):
    topic = unique("cli-created")
    proc = spool("topics", "create", topic, "--partitions", "3", "-b", bootstrap, timeout=30)
    assert proc.returncode == 0, describe(proc)
    check_created_topic_listed(bootstrap, topic, 3)


def test_spool_produce_then_kcat_consume(bootstrap):
    topic = unique("cli-to-kcat")
    values = [f"line {i} from spool produce" for i in range(20)]
    proc = spool("produce", topic, "-b", bootstrap, input=("\n".join(values) + "\n").encode(), timeout=60)
    assert proc.returncode == 0, describe(proc)
    msgs = kcat_consume(bootstrap, topic)
    assert [m["payload"] for m in sorted(msgs, key=lambda m: (m["partition"], m["offset"]))] == values


def test_kcat_produce_then_spool_consume(bootstrap):
    topic = unique("kcat-to-cli")
    values = [f"line {i} from kcat" for i in range(20)]
    proc = kcat(
        bootstrap,
        "-P",
        "-t",
        topic,
        "-X",
        "allow.auto.create.topics=true",
        "-X",
        "message.timeout.ms=30000",
        input=("\n".join(values) + "\n").encode(),
        timeout=60,
    )
    assert proc.returncode == 0, describe(proc)
    assert len(kcat_consume(bootstrap, topic)) == len(values), "kcat did not read back what it produced"

    proc = spool("consume", topic, "-b", bootstrap, "--from-beginning", "--count", str(len(values)), timeout=60)
    assert proc.returncode == 0, describe(proc)
    lines = [line for line in proc.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    # The CLI's exact line format is its own; each record's value must be on its own line, in order.
    assert len(lines) == len(values), describe(proc)
    for line, value in zip(lines, values, strict=True):
        assert value in line, f"expected {value!r} in {line!r}\n{describe(proc)}"
