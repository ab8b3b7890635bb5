"""Shared by the Python peer programs: the peer contract and the client-neutral half of each scenario.

interop/SCENARIOS.md defines the scenarios. Each peer (confluent_peer.py, kafka_python_peer.py, aiokafka_peer.py)
talks to the broker with its own client, turns what it read into `Rec` values and hands them to the checks here, so
the three clients are held to exactly the same expectations. Nothing in this module talks to a broker.

Exit codes: 0 every check held; 1 a check failed (expected vs seen on stderr); 2 bad command line; 3 the client has no
API for a step of the scenario (raised only after every step it can do has run and held).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNSUPPORTED = 0, 1, 2, 3

SCENARIOS = (
    "produce-codecs",
    "produce-headers-nulls",
    "produce-idempotent",
    "consume-offsets",
    "consume-timestamp",
    "group-rebalance",
    "offsets-commit-fetch",
    "admin-topics",
    "admin-groups",
)

# Seconds any single wait may take. The contract gives a peer 90 s for a whole scenario; no scenario has more than
# a couple of long waits, and on a healthy broker each takes well under a second.
WAIT = 30.0

T = TypeVar("T")


class CheckFailed(Exception):
    """A scenario check did not hold; the message says what was expected and what was seen."""


class NotSupported(Exception):
    """The client has no API for a step of the scenario. Raise it only after running every step the client can do."""


def ok(what: str) -> None:
    print(f"ok: {what}", flush=True)


def check(condition: bool, what: str, detail: str = "") -> None:
    if not condition:
        raise CheckFailed(f"{what}{': ' + detail if detail else ''}")
    ok(what)


def check_equal(what: str, expected: object, seen: object) -> None:
    if expected != seen:
        raise CheckFailed(f"{what}: expected {_short(expected)}, seen {_short(seen)}")
    ok(what)


def wait_for(what: str, probe: Callable[[], T], timeout: float = WAIT, interval: float = 0.2) -> T:
    """Polls `probe` until it returns something truthy; fails with the last result or error at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except Exception as exc:  # noqa: BLE001 - reported at the deadline
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}; last result: {_short(last)}")
        time.sleep(interval)


def _short(value: object, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


@dataclass(frozen=True)
class Rec:
    """One consumed record, as the client returned it (headers as a tuple of (name, value-or-None) in wire order)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp: int | None = None


def check_records(what: str, expected: Sequence[tuple], seen: Sequence[tuple]) -> None:
    """Compares two record lists element by element and reports the first difference (and the lengths)."""
    if list(expected) == list(seen):
        ok(what)
        return
    for i, (e, s) in enumerate(zip(expected, seen, strict=False)):
        if e != s:
            raise CheckFailed(f"{what}: first difference at index {i}: expected {e!r}, seen {s!r}")
    raise CheckFailed(
        f"{what}: expected {len(expected)} records, seen {len(seen)}; extra/missing tail: "
        f"{_short(list(expected[len(seen) :]) or list(seen[len(expected) :]))}"
    )


# --------------------------------------------------------------------------------------------------------------------
# produce-codecs
# --------------------------------------------------------------------------------------------------------------------

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
RECORDS_PER_CODEC = 20


def codec_records(codec: str) -> list[tuple[bytes, bytes]]:
    return [(f"k-{codec}-{i}".encode(), f"v-{codec}-{i}".encode()) for i in range(RECORDS_PER_CODEC)]


def check_codecs_read_back(recs: Sequence[Rec], end_offset: int) -> None:
    expected = [(0, i, k, v) for i, (k, v) in enumerate(kv for c in CODECS for kv in codec_records(c))]
    check_records(
        "100 records read back from offset 0: partition, offset, key, value in produce order",
        expected,
        [(r.partition, r.offset, r.key, r.value) for r in recs],
    )
    check_equal("log end offset (no duplicate batches)", len(expected), end_offset)


# --------------------------------------------------------------------------------------------------------------------
# produce-headers-nulls
# --------------------------------------------------------------------------------------------------------------------

Headers = tuple[tuple[str, bytes | None], ...]


def header_records(null_header_value: bool = True) -> list[tuple[bytes | None, bytes | None, Headers]]:
    """(key, value, headers) in send order. `null_header_value=False` for clients that cannot send a null header."""
    return [
        (b"a", b"1", (("h1", b"x"), ("h2", b"y"), ("h1", b"z"))),
        (b"b", None, ()),
        (None, b"3", ()),
        (b"d", b"", ()),
        (b"e", b"5", (("e", None if null_header_value else b""),)),
    ]


def check_header_records(recs: Sequence[Rec], null_header_value: bool = True) -> None:
    expected = [(0, i, k, v, h) for i, (k, v, h) in enumerate(header_records(null_header_value))]
    check_records(
        "keys, values (null vs empty) and headers (order, duplicates, null) read back",
        expected,
        [(r.partition, r.offset, r.key, r.value, r.headers) for r in recs],
    )


# --------------------------------------------------------------------------------------------------------------------
# produce-idempotent
# --------------------------------------------------------------------------------------------------------------------

IDEMPOTENT_RECORDS = 1000
IDEMPOTENT_PARTITIONS = 3


def idempotent_records() -> list[tuple[bytes, bytes]]:
    return [(f"key-{i}".encode(), str(i).encode()) for i in range(IDEMPOTENT_RECORDS)]


def check_idempotent_read_back(recs: Sequence[Rec], end_offsets: dict[int, int]) -> None:
    check_equal("records read from the 3 partitions", IDEMPOTENT_RECORDS, len(recs))
    check_equal(
        "sum of the partitions' end offsets (nothing written twice)", IDEMPOTENT_RECORDS, sum(end_offsets.values())
    )
    sent = dict(idempotent_records())
    seen_keys: dict[bytes, Rec] = {}
    for r in recs:
        if r.key in seen_keys:
            raise CheckFailed(f"key {r.key!r} read twice: {seen_keys[r.key]} and {r}")
        seen_keys[r.key] = r
        if sent.get(r.key) != r.value:
            raise CheckFailed(f"record {r}: sent value {sent.get(r.key)!r} for this key")
    check_equal("keys read back", set(sent), set(seen_keys))
    for p in sorted({r.partition for r in recs}):
        mine = sorted((r for r in recs if r.partition == p), key=lambda r: r.offset)
        values = [int(r.value) for r in mine]
        if any(b <= a for a, b in zip(values, values[1:], strict=False)):
            raise CheckFailed(f"partition {p}: values do not increase with the offset: {_short(values)}")
        ok(f"partition {p}: {len(mine)} records, values increase with the offset")


# --------------------------------------------------------------------------------------------------------------------
# consume-offsets
# --------------------------------------------------------------------------------------------------------------------

OFFSETS_RECORDS = 100
SEEK_TO = 42


def offsets_values() -> list[bytes]:
    return [str(i).encode() for i in range(OFFSETS_RECORDS)]


def check_watermarks(earliest: int, latest: int) -> None:
    check_equal("earliest offset (ListOffsets)", 0, earliest)
    check_equal("latest offset (ListOffsets)", OFFSETS_RECORDS, latest)


def check_read_from_seek(recs: Sequence[Rec]) -> None:
    expected = [(0, i, str(i).encode()) for i in range(SEEK_TO, OFFSETS_RECORDS)]
    check_records(
        f"records after seek({SEEK_TO}): offsets {SEEK_TO}..99 with values '{SEEK_TO}'..'99', none before",
        expected,
        [(r.partition, r.offset, r.value) for r in recs],
    )


# --------------------------------------------------------------------------------------------------------------------
# consume-timestamp
# --------------------------------------------------------------------------------------------------------------------

TIMESTAMP_RECORDS = 100


def timestamp_base() -> int:
    """T0: one hour ago, rounded down to the second (recent enough for any retention, old enough to be explicit)."""
    return (int(time.time() * 1000) - 3_600_000) // 1000 * 1000


def timestamp_records(t0: int) -> list[tuple[bytes, int]]:
    """(value, CreateTime) in send order."""
    return [(str(i).encode(), t0 + i * 1000) for i in range(TIMESTAMP_RECORDS)]


def check_offsets_for_times(lookup: Callable[[int], int | None], t0: int) -> int:
    """`lookup(ts)` returns the offset for a timestamp, or None when the broker answers "none" (-1 / end)."""
    check_equal("offset for T0 + 50500", 51, lookup(t0 + 50_500))
    check_equal("offset for T0", 0, lookup(t0))
    check_equal("offset for T0 + 200000 (after the last record)", None, lookup(t0 + 200_000))
    return 51


def check_read_from_timestamp(recs: Sequence[Rec], t0: int) -> None:
    expected = [(0, i, str(i).encode(), t0 + i * 1000) for i in range(51, TIMESTAMP_RECORDS)]
    check_records(
        "records from the offset for T0 + 50500: offsets 51..99 with their CreateTime",
        expected,
        [(r.partition, r.offset, r.value, r.timestamp) for r in recs],
    )


# --------------------------------------------------------------------------------------------------------------------
# group-rebalance
# --------------------------------------------------------------------------------------------------------------------

GROUP_PARTITIONS = 4
FIRST_BATCH = [f"k-{i}".encode() for i in range(100)]
SECOND_BATCH = [f"k-{i}".encode() for i in range(100, 140)]


def assignment_split(a: set[int], b: set[int]) -> bool:
    """True when A and B are disjoint, cover every partition and each has at least one."""
    return bool(a) and bool(b) and not (a & b) and (a | b) == set(range(GROUP_PARTITIONS))


def check_received_once(what: str, expected_keys: Sequence[bytes], recs: Sequence[Rec]) -> None:
    keys = [r.key for r in recs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise CheckFailed(f"{what}: keys received more than once: {_short(duplicates)}")
    missing = sorted(set(expected_keys) - set(keys))
    unexpected = sorted(set(keys) - set(expected_keys))
    if missing or unexpected:
        raise CheckFailed(f"{what}: missing {_short(missing)}, unexpected {_short(unexpected)}")
    ok(what)


# --------------------------------------------------------------------------------------------------------------------
# offsets-commit-fetch
# --------------------------------------------------------------------------------------------------------------------

COMMIT_PARTITIONS = 2
COMMIT_RECORDS_PER_PARTITION = 10
# partition -> (offset to commit, commit metadata)
COMMITS = {0: (3, "m0"), 1: (7, "m1")}


# --------------------------------------------------------------------------------------------------------------------
# admin-topics / admin-groups
# --------------------------------------------------------------------------------------------------------------------

RETENTION_MS = "3600000"
ADMIN_GROUP_PARTITIONS = 2


# --------------------------------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------------------------------


def main(client: str, scenarios: dict[str, Callable[[str, str], None]], argv: Sequence[str] | None = None) -> int:
    """Parses `--bootstrap HOST:PORT --scenario NAME --prefix PREFIX`, runs the scenario, returns the exit code."""
    parser = argparse.ArgumentParser(description=f"{client} interop peer (interop/SCENARIOS.md)")
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker")
    parser.add_argument("--scenario", required=True, choices=SCENARIOS)
    parser.add_argument("--prefix", required=True, help="prefix of every topic and group this run creates")
    args = parser.parse_args(argv)
    run = scenarios.get(args.scenario)
    if run is None:  # every scenario has an entry; a missing one is a bug of this peer
        print(f"{client}: scenario {args.scenario} is not implemented by this peer", file=sys.stderr)
        return EXIT_FAILED
    started = time.monotonic()
    print(f"{client}: scenario {args.scenario}, prefix {args.prefix}, bootstrap {args.bootstrap}", flush=True)
    try:
        run(args.bootstrap, args.prefix)
    except NotSupported as exc:
        print(f"NOT SUPPORTED by {client}: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except CheckFailed as exc:
        print(f"FAILED {args.scenario} ({client}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception:  # noqa: BLE001 - any client error fails the scenario, with its traceback
        print(f"FAILED {args.scenario} ({client}): unexpected error", file=sys.stderr)
        traceback.print_exc()
        return EXIT_FAILED
    print(f"PASSED {args.scenario} ({client}) in {time.monotonic() - started:.1f}s", flush=True)
    return EXIT_OK
