"""Fixtures for the interop suite.

The suite never builds anything: it runs the `spool` binary at $SPOOL_BIN (default
<repo>/target/release/spool). A missing or broken binary makes the broker fixture FAIL with
the broker's captured output, never skip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

import matrix
from interop_helpers import REPO, CLIENT_ERRORS, CLIENT_TIMEOUT, HarnessError, SpoolBroker, client_conf, spool_bin


def _attempt(fn: Callable[[], object], prefix: str = "") -> object:
    """Runs fn; a HarnessError becomes a plain pytest failure with its message (no chained traceback)."""
    try:
        return fn()
    except HarnessError as exc:
        message = prefix + str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpoolBroker]:
    """One broker shared by the whole session; SIGTERMed at the end, which must exit 0."""
    data_dir = tmp_path_factory.mktemp("spool-session") / "data"
    # No initial rebalance delay, as in the reference Kafka (reference/kafka_as_spool.py): every group test would
    # otherwise wait 3 s for more members; the delay itself is covered by the broker's own tests.
    broker = SpoolBroker(data_dir, name="session", extra_args=["--group-initial-rebalance-delay-ms", "0"])
    _attempt(broker.start)
    yield broker
    _attempt(broker.stop_ok)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpoolBroker]:
    """Apache Kafka 4.3.1 (single-node KRaft from the Maven jars, formatted and started by
    reference/kafka-as-spool) for the tests of Spool's client and CLI against Kafka."""
    libs = REPO / ".peers" / "kafka-ref" / "libs"
    if not (libs / "kafka_2.13-4.3.1.jar").exists():
        pytest.fail(f"Apache Kafka's jars are missing from {libs}: run interop/install-peers.sh", pytrace=False)
    data_dir = tmp_path_factory.mktemp("kafka-session") / "data"
    broker = SpoolBroker(
        data_dir,
        name="apache-kafka",
        binary=REPO / "interop" / "reference" / "kafka-as-spool",
        start_timeout=180,
        stop_timeout=90,
    )
    _attempt(broker.start)
    yield broker
    _attempt(broker.stop_ok)


@pytest.fixture
def broker(session_broker: SpoolBroker) -> Iterator[SpoolBroker]:
    """The session broker, checked to be alive before and after each test that uses it."""
    _attempt(session_broker.assert_running)
    yield session_broker
    _attempt(session_broker.assert_running, "the session broker died during this test: ")


@pytest.fixture
def bootstrap(broker: SpoolBroker) -> str:
    return broker.bootstrap


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., SpoolBroker]]:
    """Starts private brokers (function scope), e.g. several in turn on one data dir.

    Brokers still running at the end of the test are SIGTERMed and must exit 0.
    """
    mine: list[SpoolBroker] = []

    def start(data_dir: Path | None = None, name: str = "private", extra_args: list[str] | None = None) -> SpoolBroker:
        b = SpoolBroker(data_dir or (tmp_path / "data"), name=name, extra_args=extra_args)
        mine.append(b)
        _attempt(b.start)
        return b

    yield start
    problems = []
    for b in mine:
        if b.running():
            try:
                b.stop_ok()
            except HarnessError as exc:
                problems.append(str(exc))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_conf(bootstrap))


# --------------------------------------------------------------------------------------------------
# Failure reports: attach the broker output and client errors seen during the failing test.
# --------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _spool_log_marks(request: pytest.FixtureRequest) -> None:
    request.node._spool_log_marks = {id(b): b.log_mark() for b in SpoolBroker.started}
    request.node._spool_client_errors_mark = len(CLIENT_ERRORS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    _record_matrix(item, report)
    if not report.failed:
        return
    marks: dict[int, int] = getattr(item, "_spool_log_marks", {})
    already_shown = str(report.longrepr)
    for b in SpoolBroker.started:
        start = marks.get(id(b), 0)
        tail = b.log_tail(60, start=start)
        if not tail or tail.splitlines()[-1] in already_shown:
            continue  # the failure message already carries this broker's output
        report.sections.append((f"spool broker '{b.name}' output during this test ({b.log_file})", tail))
    errs = CLIENT_ERRORS[getattr(item, "_spool_client_errors_mark", 0) :]
    if errs:
        report.sections.append(("librdkafka client errors during this test", "\n".join(errs[-40:])))


def pytest_report_header(config: pytest.Config) -> list[str]:
    from importlib.metadata import version

    import confluent_kafka

    return [
        f"spool binary: {spool_bin()}",
        f"confluent-kafka {version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]}),"
        f" client timeout {CLIENT_TIMEOUT:.0f}s",
    ]


# --------------------------------------------------------------------------------------------------
# The compatibility matrix (matrix.py): every outcome of a test marked @pytest.mark.matrix(...).
# --------------------------------------------------------------------------------------------------


def _record_matrix(item: pytest.Item, report: pytest.TestReport) -> None:
    marks = list(item.iter_markers("matrix"))
    if not marks:
        return
    xfail_reason = getattr(report, "wasxfail", None)
    if report.when == "call":
        if report.passed and xfail_reason is None:
            matrix.record(item.nodeid, marks, matrix.PASS)
        elif report.skipped and xfail_reason is not None:
            matrix.record(item.nodeid, marks, matrix.UNSUPPORTED, xfail_reason.removeprefix("reason: "))
        else:  # failed, xpassed (a "not supported" scenario that now works must be relisted), or skipped
            matrix.record(item.nodeid, marks, matrix.FAIL)
    elif report.failed or report.skipped:  # setup or teardown: a skip is a failure too (never skip silently)
        matrix.record(item.nodeid, marks, matrix.FAIL)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A FAIL cell fails the run even where pytest itself would pass (an error in an xfail test's setup, a skip).
    if matrix.any_failed() and session.exitstatus == 0:
        session.exitstatus = 1
        print("\ncompatibility matrix: a cell FAILED although pytest passed (a setup error or skip); see the report")
    out = os.environ.get("SPOOL_MATRIX_OUT")
    if not out:
        return
    import subprocess

    try:
        version = subprocess.run([str(spool_bin()), "--version"], capture_output=True, text=True, timeout=30)
        spool_version = version.stdout.strip().removeprefix("spool ") or "(unknown)"
    except OSError:
        spool_version = "(unknown)"
    matrix.write(Path(out), spool_version)
