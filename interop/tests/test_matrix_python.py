"""Compatibility matrix rows of the Python clients: confluent-kafka, kafka-python and aiokafka.

Each test runs one peer program of interop/peers/python (with this venv's interpreter) for one scenario of
interop/SCENARIOS.md; the peer exits 0 only when every check of the scenario held.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import matrix
from interop_helpers import unique

PEERS = Path(__file__).resolve().parents[1] / "peers" / "python"

# Display name in the matrix -> (peer program, short name for topic prefixes).
CLIENTS = {
    "confluent-kafka (Python)": ("confluent_peer.py", "ck"),
    "kafka-python": ("kafka_python_peer.py", "kp"),
    "aiokafka": ("aiokafka_peer.py", "aio"),
}

# (client, scenario) -> why the client cannot do the whole scenario. These tests must keep failing with
# matrix.Unsupported (the peer's exit 3: every step before the missing API held; strict xfail): any other failure
# is a real FAIL, and a pass means the entry must go.
NOT_SUPPORTED = {
    ("aiokafka", "admin-groups"): (
        "aiokafka 0.14.0's AIOKafkaAdminClient has no delete-consumer-groups method (no DeleteGroups API); "
        "list, describe, offsets and the Empty state are checked"
    ),
}


@pytest.fixture(scope="session", autouse=True)
def python_client_versions() -> None:
    import confluent_kafka

    matrix.set_version(
        "confluent-kafka (Python)", f"{version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]})"
    )
    matrix.set_version("kafka-python", version("kafka-python"))
    matrix.set_version("aiokafka", version("aiokafka"))


def _cases():
    for client in CLIENTS:
        for scenario in matrix.SCENARIOS:
            marks = [pytest.mark.matrix(client, scenario)]
            reason = NOT_SUPPORTED.get((client, scenario))
            if reason:
                marks.append(pytest.mark.xfail(strict=True, raises=matrix.Unsupported, reason=reason))
            yield pytest.param(client, scenario, marks=marks, id=f"{CLIENTS[client][1]}-{scenario}")


@pytest.mark.parametrize(("client", "scenario"), list(_cases()))
def test_python_client_scenario(bootstrap, client, scenario):
    program, short = CLIENTS[client]
    cmd = [sys.executable, str(PEERS / program)]
    matrix.run_peer(cmd, scenario, bootstrap, unique(f"py-{short}-{scenario}"), cwd=PEERS)
