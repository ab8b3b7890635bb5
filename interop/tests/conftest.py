"""Fixtures for the interop suite.

The suite never builds anything: it runs the `spool` binary at $SPOOL_BIN (default
<repo>/target/release/spool). A missing or broken binary makes the broker fixture FAIL with
the broker's captured output, never skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from interop_helpers import CLIENT_ERRORS, CLIENT_TIMEOUT, HarnessError, SpoolBroker, client_conf, spool_bin


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
    broker = SpoolBroker(data_dir, name="session")
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
