"""kafkajs (npm, Node.js) against spool broker: the kafkajs row of the compatibility matrix.

The peer program is interop/peers/js/peer.js (contract and scenarios: interop/SCENARIOS.md); kafkajs and its codec
plugins are installed by interop/peers/js/install.sh from package-lock.json into $SPOOL_PEERS_DIR/js-peer.

kafkajs has no API for two steps of the contract, so those two cells are split: a test runs the scenario with the
closest thing kafkajs can do (`--closest`, which must pass) and a strict xfail runs it as written (the peer fails,
naming the missing API). See interop/peers/js/scenarios.js.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import matrix
from interop_helpers import consume_all, unique

CLIENT = "kafkajs"
PEER_JS = Path(__file__).resolve().parents[1] / "peers" / "js" / "peer.js"

# Scenarios kafkajs runs exactly as SCENARIOS.md writes them.
# Where kafkajs cannot observe part of a scenario as written (shown in COMPATIBILITY.md).
NOTES = {
    "consume-timestamp": {
        "note": "kafkajs reports a timestamp past the end (ListOffsets -1) as the end offset, so the peer cannot tell "
        "-1 from 100 for the 'none' lookup"
    },
}

AS_WRITTEN = [
    "produce-codecs",
    "produce-idempotent",
    "consume-timestamp",
    "group-rebalance",
    "offsets-commit-fetch",
    "admin-topics",
    "admin-groups",
]

NO_INTERLEAVED_HEADERS = (
    "kafkajs 2.2.4 headers are a JS object keyed by name (a repeated name is an array of values): it cannot send "
    "h1=x, h2=y, h1=z in that order (it sends h1=x, h1=z, h2=y) and cannot report the order of different header "
    "names on consume; the rest of the scenario passes (test_kafkajs_produce_headers_nulls_closest)"
)
NO_GROUPLESS_CONSUMER = (
    "kafkajs 2.2.4 has no consumer without a group (groupId is mandatory, no assign()); ListOffsets and the seek to "
    "42 pass with a one-member group instead (test_kafkajs_consume_offsets_closest)"
)


@pytest.fixture(scope="session")
def kafkajs_peer() -> list[str]:
    """The peer's command line; fails (never skips) if Node or the installed kafkajs are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found on PATH (interop/peers/js/install.sh needs Node.js 20+)", pytrace=False)
    cmd = [node, str(PEER_JS)]
    proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(
            f"the kafkajs peer does not start (run interop/peers/js/install.sh): {' '.join(cmd)} --version\n"
            f"{proc.stdout}{proc.stderr}",
            pytrace=False,
        )
    matrix.set_version(CLIENT, proc.stdout.strip())  # kafkajs's own package.json, read by the peer
    return cmd


@pytest.mark.parametrize(
    "scenario",
    [pytest.param(s, marks=pytest.mark.matrix(CLIENT, s, **NOTES.get(s, {})), id=s) for s in AS_WRITTEN],
)
def test_kafkajs(kafkajs_peer, bootstrap, scenario):
    matrix.run_peer(kafkajs_peer, scenario, bootstrap, unique("kjs"))


@pytest.mark.matrix(
    CLIENT, "produce-headers-nulls", note="kafkajs cannot send a null header value: record e's header is sent empty"
)
def test_kafkajs_produce_headers_nulls_closest(kafkajs_peer, bootstrap):
    prefix = unique("kjs")
    matrix.run_peer([*kafkajs_peer, "--closest"], "produce-headers-nulls", bootstrap, prefix)
    # The peer read the records back with kafkajs, which cannot show the order of different header names; read
    # them with librdkafka to check exactly what kafkajs put on the wire (and that an empty header is not null).
    got = [(r.offset, r.key, r.value, r.headers) for r in consume_all(bootstrap, f"{prefix}-hdr", [0])]
    assert got == [
        (0, b"a", b"1", [("h1", b"x"), ("h1", b"z"), ("h2", b"y")]),
        (1, b"b", None, None),
        (2, None, b"3", None),
        (3, b"d", b"", None),
        (4, b"e", b"5", [("e", b"")]),
    ]


@pytest.mark.matrix(CLIENT, "produce-headers-nulls")
@pytest.mark.xfail(strict=True, raises=matrix.Unsupported, reason=NO_INTERLEAVED_HEADERS)
def test_kafkajs_produce_headers_nulls_interleaved(kafkajs_peer, bootstrap):
    matrix.run_peer(kafkajs_peer, "produce-headers-nulls", bootstrap, unique("kjs"))


@pytest.mark.matrix(CLIENT, "consume-offsets")
def test_kafkajs_consume_offsets_closest(kafkajs_peer, bootstrap):
    matrix.run_peer([*kafkajs_peer, "--closest"], "consume-offsets", bootstrap, unique("kjs"))


@pytest.mark.matrix(CLIENT, "consume-offsets")
@pytest.mark.xfail(strict=True, raises=matrix.Unsupported, reason=NO_GROUPLESS_CONSUMER)
def test_kafkajs_consume_offsets_without_group(kafkajs_peer, bootstrap):
    matrix.run_peer(kafkajs_peer, "consume-offsets", bootstrap, unique("kjs"))
