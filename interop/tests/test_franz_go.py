"""franz-go (Go, pkg/kgo + pkg/kadm) against spool broker.

Two parts:
- the nine scenarios of interop/SCENARIOS.md, run by the Go peer (interop/peers/go, built by its install.sh);
- franz-go's own pkg/kgo test suite (the test binary built from the pinned module) run against a private broker,
  its outcome compared with interop/peers/go/kgo-expected.txt.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import matrix
from interop_helpers import REPO, HarnessError, spool_bin, unique

CLIENT = "franz-go"
PEERS_DIR = Path(os.environ.get("SPOOL_PEERS_DIR", str(REPO / ".peers")))
GO_BIN = PEERS_DIR / "go-peer" / "bin"
EXPECTED_FILE = REPO / "interop" / "peers" / "go" / "kgo-expected.txt"


def _peer_binary(name: str) -> Path:
    path = GO_BIN / name
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is missing: run interop/peers/go/install.sh (interop/run.sh does)")
    return path


@pytest.fixture(scope="session")
def go_peer_version() -> str:
    """The franz-go version the peers were built with (go.mod); recorded for the matrix."""
    peer = _peer_binary("go-peer")
    proc = subprocess.run([str(peer), "--version"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise HarnessError(f"{peer} --version failed (exit {proc.returncode}): {proc.stderr}")
    version = proc.stdout.strip()
    matrix.set_version(CLIENT, version)
    return version


@pytest.fixture(scope="session")
def go_peer(go_peer_version) -> Path:
    """The franz-go scenario peer (interop/peers/go)."""
    return _peer_binary("go-peer")


@pytest.mark.parametrize("scenario", [pytest.param(s, marks=pytest.mark.matrix(CLIENT, s)) for s in matrix.SCENARIOS])
def test_franz_go_scenario(go_peer, bootstrap, scenario):
    out = matrix.run_peer([str(go_peer)], scenario, bootstrap, unique(f"franz-{scenario}"))
    print(out)


# ------------------------------------------------------------------------------------------------------------------
# franz-go's pkg/kgo tests against a private broker
# ------------------------------------------------------------------------------------------------------------------

# How franz-go's tests are pointed at a broker (pkg/kgo/helpers_test.go): one broker, so replication factor 1, and
# fewer records than the default 500000 for the ETL tests so that the whole run fits in a few minutes on 2 cores.
KGO_ENV = {"KGO_TEST_RF": "1", "KGO_TEST_RECORDS": "1000", "KGO_LOG_LEVEL": "none"}
# Each top-level test runs in its own process under this limit, so one that hangs cannot take the others with it.
KGO_TEST_LIMIT = 60.0
# Tests expected to fail are cut short: how they fail is known (kgo-expected.txt), waiting longer shows nothing new.
KGO_EXPECTED_FAIL_LIMIT = 20.0
# The whole run; tests not started by then count as not run, which fails the check.
KGO_RUN_LIMIT = 240.0


@dataclass
class Expectations:
    """kgo-expected.txt: the top-level kgo tests expected to fail on a target, with why."""

    fail: dict[str, str] = field(default_factory=dict)  # test name -> reason

    @classmethod
    def load(cls, path: Path, target: str) -> "Expectations":
        exp = cls()
        for n, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 3 or parts[1] not in ("spool", "kafka", "both"):
                raise HarnessError(f"{path}:{n}: want 'TestName spool|kafka|both reason', got {raw!r}")
            name, where, reason = parts
            if where in (target, "both"):
                exp.fail[name] = reason
        return exp


@dataclass
class KgoRun:
    """Outcomes of franz-go's tests: top-level and subtests, as test2json reports them."""

    outcomes: dict[str, str] = field(default_factory=dict)  # test name -> pass / fail / skip / timeout / not run
    output: dict[str, list[str]] = field(default_factory=dict)  # top-level test -> its output lines
    seconds: dict[str, float] = field(default_factory=dict)  # top-level test -> wall time

    def top_level(self, outcome: str) -> list[str]:
        return sorted(t for t, o in self.outcomes.items() if "/" not in t and o == outcome)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)


def list_kgo_tests(kgo_test: Path, cwd: Path) -> list[str]:
    proc = subprocess.run([str(kgo_test), "-test.list", "."], capture_output=True, text=True, timeout=60, cwd=cwd)
    if proc.returncode != 0:
        raise HarnessError(f"{kgo_test} -test.list failed (exit {proc.returncode}): {proc.stderr}")
    return [line for line in proc.stdout.splitlines() if line.startswith("Test")]


def run_kgo_test(name: str, limit: float, bootstrap: str, src_dir: Path) -> KgoRun:
    """Runs one top-level kgo test (with its subtests) in its own process; returns its outcomes."""
    run = KgoRun()
    cmd = [
        str(_peer_binary("test2json")), "-t", "-p", "kgo",
        str(_peer_binary("kgo.test")), "-test.v=test2json", "-test.run", f"^{name}$",
        # Go's own limit fires first and prints the stacks of what hung; the subprocess limit is the backstop.
        "-test.timeout", f"{limit:.0f}s", "-test.count", "1",
    ]  # fmt: skip
    env = {**os.environ, **KGO_ENV, "KGO_SEEDS": bootstrap}
    started = time.monotonic()
    try:
        # Some tests read franz-go's sources (e.g. config.go): run in the package's directory in the module cache.
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + 30, env=env, cwd=src_dir)
        stdout = proc.stdout
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    run.seconds[name] = time.monotonic() - started
    lines = run.output.setdefault(name, [])
    for raw in stdout.splitlines():
        try:
            event = json.loads(raw)
        except json.JSONDecodeError:
            lines.append(raw)
            continue
        test, action = event.get("Test"), event.get("Action")
        if action == "output":
            lines.append(event.get("Output", "").rstrip("\n"))
        elif test and action in ("pass", "fail", "skip"):
            run.outcomes[test] = action
    timed_out = any("panic: test timed out" in line for line in lines)
    for test in [name, *(t for t in run.outcomes if t.startswith(name + "/"))]:
        if run.outcomes.get(test) in (None, "fail") and timed_out:
            run.outcomes[test] = "timeout"
        run.outcomes.setdefault(test, "fail")  # ended without a result: crashed
    return run


def run_kgo_suite(names: list[str], expected: Expectations, bootstrap: str, src_dir: Path) -> KgoRun:
    """Runs every top-level test, two at a time (the machine has 2 cores; the tests are I/O bound)."""
    deadline = time.monotonic() + KGO_RUN_LIMIT

    def one(name: str) -> KgoRun:
        limit = KGO_EXPECTED_FAIL_LIMIT if name in expected.fail else KGO_TEST_LIMIT
        if time.monotonic() + limit > deadline:
            return KgoRun(outcomes={name: "not run"})
        return run_kgo_test(name, limit, bootstrap, src_dir)

    run = KgoRun()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for part in pool.map(one, names):
            run.outcomes.update(part.outcomes)
            run.output.update(part.output)
            run.seconds.update(part.seconds)
    return run


def kgo_summary(run: KgoRun, expected: Expectations, target: str) -> tuple[str, list[str]]:
    """A readable summary, and the differences from the expectations (empty when the run is as expected)."""
    failed = set(run.top_level("fail")) | set(run.top_level("timeout"))
    not_run = set(run.top_level("not run"))
    problems = []
    for name in sorted(failed - set(expected.fail)):
        problems.append(f"{name}: {run.outcomes[name]}, expected to pass")
    for name in sorted(set(expected.fail) - failed - not_run):
        state = run.outcomes.get(name, "not in this franz-go version")
        problems.append(f"{name}: {state}, but kgo-expected.txt expects it to fail on {target}: update the file")
    for name in sorted(not_run):
        problems.append(f"{name}: not run, the whole run exceeded {KGO_RUN_LIMIT:.0f}s")

    lines = [
        f"franz-go pkg/kgo tests against {target}: {run.count('pass')} passed, "
        f"{run.count('fail') + run.count('timeout')} failed, {run.count('skip')} skipped "
        f"(top-level and subtests; {run.count('timeout')} of the failures timed out, {len(not_run)} not run)",
        f"top-level: {len(run.top_level('pass'))} passed, {len(failed)} failed, {len(run.top_level('skip'))} skipped",
    ]
    slow = sorted(run.seconds.items(), key=lambda kv: -kv[1])[:8]
    lines.append("slowest: " + ", ".join(f"{n} {s:.1f}s" for n, s in slow))
    for name in sorted(failed):
        why = expected.fail.get(name, "NOT EXPECTED")
        subs = sorted(t for t, o in run.outcomes.items() if t.startswith(name + "/") and o in ("fail", "timeout"))
        lines.append(f"  {run.outcomes[name]}: {name} ({why})" + (f"; subtests failed: {subs}" if subs else ""))
    for name in run.top_level("skip"):
        lines.append(f"  skipped: {name}")
    return "\n".join(lines), problems


def failure_output(run: KgoRun, names: list[str], per_test: int = 40) -> str:
    """The last lines each named test printed, for a failure report."""
    out = []
    for name in names:
        lines = [line for line in run.output.get(name, []) if line.strip()]
        out.append(f"--- {name} (last {per_test} lines of output) ---")
        out.extend(lines[-per_test:])
    return "\n".join(out)


@pytest.mark.timeout(KGO_RUN_LIMIT + 90)
@pytest.mark.matrix(CLIENT, "kgo integration tests")
def test_franz_go_kgo_suite(go_peer_version, broker_factory):
    target = "kafka" if spool_bin().name == "kafka-as-spool" else "spool"
    expected = Expectations.load(EXPECTED_FILE, target)
    broker = broker_factory(name="kgo")
    src_dir = PEERS_DIR / "go-peer" / "gomod" / "github.com" / "twmb" / f"franz-go@{go_peer_version}" / "pkg" / "kgo"
    if not src_dir.is_dir():
        raise HarnessError(f"franz-go's sources are not at {src_dir}: run interop/peers/go/install.sh")
    names = list_kgo_tests(_peer_binary("kgo.test"), src_dir)
    run = run_kgo_suite(names, expected, broker.bootstrap, src_dir)
    summary, problems = kgo_summary(run, expected, target)
    print(summary)
    failed = len(run.top_level("fail")) + len(run.top_level("timeout"))
    matrix.detail(
        CLIENT,
        "kgo integration tests",
        f"top-level tests: {len(run.top_level('pass'))} passed, {failed} failed as kgo-expected.txt lists, "
        f"{len(run.top_level('skip'))} skipped",
    )
    if problems:
        unexpected = [p.split(":", 1)[0] for p in problems]
        pytest.fail(
            "franz-go's kgo tests did not end as interop/peers/go/kgo-expected.txt says:\n"
            + "\n".join(problems)
            + f"\n\n{summary}\n\n"
            + failure_output(run, [n for n in unexpected if n in run.output]),
            pytrace=False,
        )
