"""The compatibility matrix: which client passes which scenario (interop/SCENARIOS.md).

Tests say what they prove with `@pytest.mark.matrix(client, scenario, target="spool")`; conftest.py feeds every
outcome to `record()`, and at the end of a full run (`$SPOOL_MATRIX_OUT` set by interop/run.sh) `write()` turns them
into COMPATIBILITY.md. A cell passes only when every test marked with it passed; a test marked
`xfail(strict=True, reason=...)` makes the cell "not supported yet" with that reason; anything else is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Column order of the matrix; descriptions are in interop/SCENARIOS.md.
SCENARIOS = [
    "produce-codecs",
    "produce-headers-nulls",
    "produce-idempotent",
    "consume-offsets",
    "consume-timestamp",
    "group-rebalance",
    "offsets-commit-fetch",
    "admin-topics",
    "admin-groups",
]

TARGETS = {
    "spool": "Clients against `spool broker`",
    "kafka": "Spool against Apache Kafka 4.3.1 (single-node KRaft, from the Maven jars)",
}

PASS, FAIL, UNSUPPORTED = "pass", "FAIL", "not supported yet"


@dataclass
class Cell:
    outcome: str = PASS
    tests: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    # How the client's test departs from interop/SCENARIOS.md (`note=` on the marker); shown under the table.
    notes: list[str] = field(default_factory=list)

    def add(self, nodeid: str, outcome: str, reason: str) -> None:
        self.tests.append(nodeid)
        if outcome == FAIL or (outcome == UNSUPPORTED and self.outcome == PASS):
            self.outcome = outcome
        if reason and reason not in self.reasons:
            self.reasons.append(reason)


_cells: dict[tuple[str, str, str], Cell] = {}
_versions: dict[str, str] = {}
_order: list[str] = []


_details: dict[tuple[str, str, str], str] = {}


def detail(client: str, check: str, text: str, target: str = "spool") -> None:
    """A figure shown beside a cell's outcome (e.g. how many of a third-party suite's tests passed); keep it stable
    from run to run, since COMPATIBILITY.md must not change when the code does not."""
    _details[(target, client, check)] = text


def set_version(client: str, version: str) -> None:
    """Records the version shown next to a client's name (call it from a fixture that found the real version)."""
    _versions[client] = version


def record(nodeid: str, marks: list[pytest.Mark], outcome: str, reason: str = "") -> None:
    for mark in marks:
        client, scenario = mark.args
        target = mark.kwargs.get("target", "spool")
        if target not in TARGETS:
            raise ValueError(f"{nodeid}: unknown matrix target {target!r}")
        if client not in _order:
            _order.append(client)
        cell = _cells.setdefault((target, client, scenario), Cell())
        cell.add(nodeid, outcome, reason)
        note = mark.kwargs.get("note")
        if note and note not in cell.notes:
            cell.notes.append(note)


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    text = cell.outcome
    if cell.outcome == UNSUPPORTED:
        text = "not yet ¹" if cell.reasons else "not yet"
    return text + (" ²" if cell.notes else "")


def render(spool_version: str) -> str:
    out = [
        "# Compatibility",
        "",
        "Written by the interop runner (`interop/run.sh`, `interop/tests/matrix.py`) from its last full run; never edit",
        "by hand. Scenarios are defined in [interop/SCENARIOS.md](interop/SCENARIOS.md). `pass`: every test of that",
        "cell passed; `FAIL`: one did not (CI fails); `not yet`: declared not supported yet, reason below (the test",
        "still runs and must keep failing); `²`: the client cannot express part of the scenario as written and the",
        "test checks the closest it can, as noted below; `-`: not applicable to that client or not covered.",
        "",
        f"Spool {spool_version}.",
    ]
    extra_lines: list[str] = []
    unsupported_lines: list[str] = []
    note_lines: list[str] = []
    for target, title in TARGETS.items():
        clients = [c for c in _order if any(k[0] == target and k[1] == c for k in _cells)]
        if not clients:
            continue
        out += ["", f"## {title}", ""]
        out.append("| client | " + " | ".join(f"`{s}`" for s in SCENARIOS) + " |")
        out.append("|---" * (len(SCENARIOS) + 1) + "|")
        for client in clients:
            name = f"{client} {_versions[client]}" if client in _versions else client
            row = [_cell_text(_cells.get((target, client, s))) for s in SCENARIOS]
            out.append(f"| {name} | " + " | ".join(row) + " |")
        for (t, client, scenario), cell in sorted(_cells.items(), key=lambda kv: (_order.index(kv[0][1]), kv[0][2])):
            if t != target:
                continue
            if scenario not in SCENARIOS:
                figure = _details.get((t, client, scenario))
                outcome = _cell_text(cell) + (f" ({figure})" if figure else "")
                extra_lines.append(f"| {title.split(' (')[0]} | {client} | {scenario} | {outcome} |")
            if cell.outcome == UNSUPPORTED:
                unsupported_lines.append(f"- {client}, `{scenario}` ({target}): " + "; ".join(cell.reasons))
            if cell.notes:
                note_lines.append(f"- {client}, `{scenario}` ({target}): " + "; ".join(cell.notes))
    if extra_lines:
        out += ["", "## Further checks", "", "| against | client | check | outcome |", "|---|---|---|---|"]
        out += extra_lines
    if unsupported_lines:
        out += ["", "## ¹ Not supported yet", ""] + unsupported_lines
    if note_lines:
        out += ["", "## ² How the test departs from the scenario", ""] + note_lines
    out += [
        "",
        "## Tests behind each cell",
        "",
        "<details><summary>pytest node ids</summary>",
        "",
    ]
    for (target, client, scenario), cell in sorted(_cells.items()):
        out.append(f"- {target} / {client} / `{scenario}`: " + ", ".join(f"`{t}`" for t in sorted(set(cell.tests))))
    out += ["", "</details>", ""]
    return "\n".join(out)


def write(path: Path, spool_version: str) -> None:
    path.write_text(render(spool_version))


def any_failed() -> bool:
    return any(c.outcome == FAIL for c in _cells.values())


# ------------------------------------------------------------------------------------------------------------------
# Peer programs (see interop/SCENARIOS.md for the contract)
# ------------------------------------------------------------------------------------------------------------------


class Unsupported(Exception):
    """A peer exited 3: its client has no API for a step of the scenario (every earlier step held). Only a test
    marked `xfail(strict=True, raises=matrix.Unsupported, reason=...)` may end this way."""


EXIT_UNSUPPORTED = 3


def run_peer(cmd: list[str], scenario: str, bootstrap: str, prefix: str, timeout: float = 120,
             env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """Runs one peer program for one scenario; fails the test with its output unless it exits 0 (exit 3 raises
    Unsupported)."""
    full = [*cmd, "--bootstrap", bootstrap, "--scenario", scenario, "--prefix", prefix]
    try:
        proc = subprocess.run(full, capture_output=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"peer did not finish scenario {scenario} within {timeout}s: {' '.join(full)}\n"
            f"stdout:\n{_tail(exc.stdout)}\nstderr:\n{_tail(exc.stderr)}",
            pytrace=False,
        )
    out = proc.stdout.decode(errors="replace")
    if proc.returncode == EXIT_UNSUPPORTED:
        raise Unsupported(f"peer reported scenario {scenario} unsupported: {_tail(proc.stderr, 5)}")
    if proc.returncode != 0:
        pytest.fail(
            f"peer failed scenario {scenario} (exit {proc.returncode}): {' '.join(full)}\n"
            f"stdout:\n{_tail(proc.stdout)}\nstderr:\n{_tail(proc.stderr)}",
            pytrace=False,
        )
    return out


def _tail(data: bytes | str | None, lines: int = 60) -> str:
    if data is None:
        return ""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return "\n".join(text.splitlines()[-lines:])


if __name__ == "__main__":  # pragma: no cover - handy to see the layout: python matrix.py
    sys.stdout.write(render("dev"))
