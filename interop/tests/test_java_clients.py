"""Apache Kafka's Java client (kafka-clients 4.3.1) against spool broker.

The peer program is interop/peers/java (compiled by its install.sh into $SPOOL_PEERS_DIR/java-peer/classes against
the Maven jars in $SPOOL_PEERS_DIR/kafka-ref/libs). It runs every scenario of interop/SCENARIOS.md with the classic
group protocol, and the group scenarios a second time as a KIP-848 consumer (group.protocol=consumer).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import matrix
import pytest
from interop_helpers import REPO, HarnessError, unique

PEERS = Path(os.environ.get("SPOOL_PEERS_DIR", REPO / ".peers"))
CLASSES = PEERS / "java-peer" / "classes"
LIBS = PEERS / "kafka-ref" / "libs"

CLIENT = "kafka-clients (Java)"
CLIENT_KIP848 = "kafka-clients (Java, group.protocol=consumer)"
# Scenarios whose consumers join a group, run again with the KIP-848 protocol (ConsumerGroupHeartbeat).
KIP848_SCENARIOS = ["group-rebalance", "offsets-commit-fetch", "admin-groups"]

# Small heap, serial GC, C1 only: the peer is short-lived and the machine is shared.
JAVA = [
    "java",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
]


@pytest.fixture(scope="session")
def java_peer() -> list[str]:
    """The peer's command line; records the kafka-clients version the peer really runs with."""
    if not (CLASSES / "spool" / "interop" / "Peer.class").exists():
        raise HarnessError(f"Java peer not compiled in {CLASSES}: run interop/install-peers.sh")
    cmd = [*JAVA, "-cp", f"{CLASSES}:{LIBS}/*", "spool.interop.Peer"]
    proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version:
        raise HarnessError(f"{' '.join(cmd)} --version failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    matrix.set_version(CLIENT, version)
    matrix.set_version(CLIENT_KIP848, version)
    return cmd


@pytest.mark.parametrize("scenario", [pytest.param(s, marks=pytest.mark.matrix(CLIENT, s)) for s in matrix.SCENARIOS])
def test_java_client(java_peer, bootstrap, scenario):
    matrix.run_peer(java_peer, scenario, bootstrap, unique(f"java-{scenario}"))


@pytest.mark.parametrize(
    "scenario", [pytest.param(s, marks=pytest.mark.matrix(CLIENT_KIP848, s)) for s in KIP848_SCENARIOS]
)
def test_java_client_kip848(java_peer, bootstrap, scenario):
    matrix.run_peer([*java_peer, "--group-protocol", "consumer"], scenario, bootstrap, unique(f"java848-{scenario}"))


@pytest.mark.matrix(CLIENT, "subscribe(Pattern), a matching topic created later")
def test_java_regex_subscription(java_peer, bootstrap):
    matrix.run_peer(java_peer, "regex-subscribe", bootstrap, unique("javarx"))


@pytest.mark.matrix(CLIENT_KIP848, "subscribe(Pattern), a matching topic created later")
def test_java_regex_subscription_kip848(java_peer, bootstrap):
    matrix.run_peer([*java_peer, "--group-protocol", "consumer"], "regex-subscribe", bootstrap, unique("java848rx"))


@pytest.mark.matrix(CLIENT_KIP848, "subscribe(SubscriptionPattern): a regex the broker resolves, topic created later")
def test_java_broker_regex_kip848(java_peer, bootstrap):
    matrix.run_peer(
        [*java_peer, "--group-protocol", "consumer"], "regex-subscribe-broker", bootstrap, unique("java848brx")
    )

