"""Shared helpers for the interop suite: the spool broker process, kcat, polling."""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, TypeVar

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPOOL_BIN = REPO / "target" / "release" / "spool"

# Seconds; override from the environment for slow machines.
BROKER_START_TIMEOUT = float(os.environ.get("SPOOL_START_TIMEOUT", "30"))
BROKER_STOP_TIMEOUT = float(os.environ.get("SPOOL_STOP_TIMEOUT", "20"))
CLIENT_TIMEOUT = float(os.environ.get("SPOOL_CLIENT_TIMEOUT", "30"))

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LISTENING = re.compile(r"listening on\s+(?:\w+=)?(\[[^\]]+\]|[^\s:,]+):(\d+)")

T = TypeVar("T")


class HarnessError(AssertionError):
    """A failure of the environment (broker, peer binaries), reported as a test failure."""


def spool_bin() -> Path:
    return Path(os.environ.get("SPOOL_BIN", str(DEFAULT_SPOOL_BIN)))


def check_spool_bin() -> Path:
    path = spool_bin()
    if not path.exists():
        raise HarnessError(
            f"spool binary not found at {path} (set SPOOL_BIN, or build it: cargo build --release -p spool-cli)"
        )
    if not os.access(path, os.X_OK):
        raise HarnessError(f"spool binary at {path} is not executable")
    return path


def spool_cli_bin() -> Path:
    """The real `spool` binary, also when $SPOOL_BIN stands in for another broker (reference/kafka-as-spool)."""
    if "SPOOL_CLI_BIN" in os.environ:
        return Path(os.environ["SPOOL_CLI_BIN"])
    return spool_bin() if spool_bin().name == "spool" else DEFAULT_SPOOL_BIN


def peer_bin() -> Path:
    """Spool's client as an interop peer (interop/peers/rust), built by run.sh."""
    return Path(os.environ.get("SPOOL_PEER_BIN", str(REPO / "target" / "release" / "spool-interop-peer")))


def unique(prefix: str) -> str:
    """A topic name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(
    what: str,
    probe: Callable[[], T],
    timeout: float = CLIENT_TIMEOUT,
    interval: float = 0.1,
) -> T:
    """Polls `probe` until it returns a truthy value; raises with the last result/error at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except Exception as exc:  # noqa: BLE001 - the last error is reported at the deadline
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last result: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# The broker process
# --------------------------------------------------------------------------------------------------


class SpoolBroker:
    """One `spool broker` process; its combined stdout+stderr is captured line by line."""

    # Every broker started in this pytest process, for attaching logs to failure reports.
    started: list["SpoolBroker"] = []

    def __init__(
        self,
        data_dir: Path,
        name: str = "broker",
        extra_args: list[str] | None = None,
        binary: Path | None = None,
        start_timeout: float | None = None,
        stop_timeout: float | None = None,
    ):
        """`binary` runs something else behind the same command line (reference/kafka-as-spool)."""
        self.binary = binary
        self.start_timeout = start_timeout or BROKER_START_TIMEOUT
        self.stop_timeout = stop_timeout or BROKER_STOP_TIMEOUT
        self.data_dir = Path(data_dir)
        self.name = name
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.{name}.{uuid.uuid4().hex[:6]}.log"

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        assert self.port is not None, "broker not started"
        return f"{self.host}:{self.port}"

    def start(self) -> "SpoolBroker":
        binary = self.binary or check_spool_bin()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(binary), "broker", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir), *self.extra_args]
        env = dict(os.environ)
        env.setdefault("NO_COLOR", "1")
        env.setdefault("RUST_BACKTRACE", "1")
        self._append(f"[harness] $ {' '.join(cmd)}")
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise HarnessError(f"cannot start {cmd[0]}: {exc}") from exc
        SpoolBroker.started.append(self)
        self._reader = threading.Thread(target=self._read, name=f"spool-{self.name}-log", daemon=True)
        self._reader.start()

        deadline = time.monotonic() + self.start_timeout
        while not self._listening.is_set():
            if self.proc.poll() is not None:
                self._reader.join(timeout=2)
                raise HarnessError(
                    f"spool broker exited with code {self.proc.returncode} before printing 'listening on'.\n"
                    f"command: {' '.join(cmd)}\n--- broker output ---\n{self.log_text()}"
                )
            if time.monotonic() >= deadline:
                self._force_kill()
                raise HarnessError(
                    f"spool broker printed no 'listening on HOST:PORT' line within {self.start_timeout:.0f}s "
                    f"(killed it).\ncommand: {' '.join(cmd)}\n--- broker output ---\n{self.log_text()}"
                )
            self._listening.wait(0.05)
        return self

    def stop(self) -> int:
        """SIGTERM, wait for exit; returns the exit code (fails if it does not exit in time)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._force_kill()
                raise HarnessError(
                    f"spool broker did not exit within {self.stop_timeout:.0f}s of SIGTERM (killed it)\n"
                    f"--- broker output (tail) ---\n{self.log_tail()}"
                ) from None
        if self._reader is not None:
            self._reader.join(timeout=5)
        return self.proc.returncode

    def stop_ok(self) -> None:
        """SIGTERM and assert a clean exit (code 0)."""
        already = self.proc is not None and self.proc.poll() is not None
        code = self.stop()
        if already:
            raise HarnessError(
                f"spool broker had already exited (code {code}) before it was told to stop\n"
                f"--- broker output (tail) ---\n{self.log_tail()}"
            )
        if code != 0:
            raise HarnessError(
                f"spool broker exited with code {code} after SIGTERM (expected 0)\n"
                f"--- broker output (tail) ---\n{self.log_tail()}"
            )

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, "broker is not running"
        self._force_kill()
        self._append(f"[harness] sent SIGKILL, exit status {self.proc.returncode}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self) -> None:
        if not self.running():
            code = self.proc.returncode if self.proc else None
            hint = " - a clean exit: something outside the suite sent it SIGTERM/SIGINT?" if code == 0 else ""
            raise HarnessError(
                f"spool broker is not running (exit code {code}{hint})\n--- broker output (tail) ---\n{self.log_tail()}"
            )

    def _force_kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    # -- log capture -----------------------------------------------------------------------------

    def _append(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
        with open(self.log_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = _ANSI.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
            self._append(line)
            if not self._listening.is_set():
                m = _LISTENING.search(line)
                if m:
                    host = m.group(1).strip("[]")
                    self.host = host if host not in ("0.0.0.0", "::", "localhost") else "127.0.0.1"
                    self.port = int(m.group(2))
                    self._listening.set()
        self.proc.stdout.close()

    def log_text(self, start: int = 0) -> str:
        with self._lock:
            return "\n".join(self.lines[start:])

    def log_mark(self) -> int:
        with self._lock:
            return len(self.lines)

    def log_tail(self, n: int = 80, start: int = 0) -> str:
        with self._lock:
            lines = self.lines[start:]
        return "\n".join(lines[-n:])


@atexit.register
def _kill_leftover_brokers() -> None:
    """Never leave a broker behind, whatever happened to the session (interrupt, internal error)."""
    for b in SpoolBroker.started:
        if b.running():
            b._force_kill()


# --------------------------------------------------------------------------------------------------
# kcat and the spool CLI
# --------------------------------------------------------------------------------------------------


def kcat_bin() -> str:
    path = os.environ.get("KCAT") or shutil.which("kcat") or shutil.which("kafkacat")
    if not path:
        raise HarnessError("kcat (or kafkacat) not found on PATH: run interop/install-peers.sh")
    return path


def run(cmd: list[str], *, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode("utf-8", "replace")[-4000:]
        err = (exc.stderr or b"").decode("utf-8", "replace")[-4000:]
        raise AssertionError(
            f"timed out after {timeout}s: {' '.join(cmd)}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        ) from None


def describe(proc: subprocess.CompletedProcess[bytes]) -> str:
    cmd = proc.args if isinstance(proc.args, str) else " ".join(map(str, proc.args))
    return (
        f"$ {cmd}\nexit code {proc.returncode}\n--- stdout ---\n{proc.stdout.decode('utf-8', 'replace')[-4000:]}"
        f"\n--- stderr ---\n{proc.stderr.decode('utf-8', 'replace')[-4000:]}"
    )


def kcat(
    bootstrap: str, *args: str, input: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    cmd = [
        kcat_bin(),
        "-b",
        bootstrap,
        "-X",
        "broker.address.family=v4",
        "-X",
        "socket.timeout.ms=10000",
        *args,
    ]
    return run(cmd, input=input, timeout=timeout)


def spool(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return run([str(check_spool_bin()), *args], input=input, timeout=timeout)


# --------------------------------------------------------------------------------------------------
# confluent-kafka
# --------------------------------------------------------------------------------------------------

# librdkafka error callbacks from every client made through client_conf(), for failure reports.
CLIENT_ERRORS: list[str] = []


def client_conf(bootstrap: str, extra: dict[str, object] | None = None) -> dict[str, object]:
    """A confluent-kafka config for one client of the suite."""
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "socket.timeout.ms": 10000,
        "error_cb": lambda err: CLIENT_ERRORS.append(f"librdkafka error: {err}"),
        # librdkafka's own log lines go to Python logging: pytest shows them for failing tests only.
        "logger": logging.getLogger("librdkafka"),
    }
    conf.update(extra or {})
    return conf


def admin_client(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_conf(bootstrap))


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    """Creates a topic through the AdminClient and waits until Metadata shows all its partitions led."""
    from confluent_kafka.admin import NewTopic

    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=CLIENT_TIMEOUT,
        request_timeout=CLIENT_TIMEOUT,
    )
    try:
        futures[name].result(timeout=CLIENT_TIMEOUT)
    except Exception as exc:
        raise AssertionError(f"precondition failed: AdminClient.create_topics({name!r}, {partitions}): {exc}") from exc
    wait_for_topic(admin, name, partitions)


def wait_for_topic(admin, name: str, partitions: int) -> None:
    def probe():
        md = admin.list_topics(timeout=10)
        t = md.topics.get(name)
        if t is None or t.error is not None or len(t.partitions) != partitions:
            return None
        return all(p.leader >= 0 and p.error is None for p in t.partitions.values())

    wait_until(f"metadata to show topic {name} with {partitions} led partitions", probe)


class Produced:
    """What a producer sent and what the broker acknowledged for it."""

    def __init__(self, key, value, headers, timestamp=None):
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp  # requested CreateTime, or None
        self.error = None
        self.partition = None
        self.offset = None
        self.acked_timestamp = None

    def on_delivery(self, err, msg) -> None:
        self.error = err
        if err is None:
            self.partition = msg.partition()
            self.offset = msg.offset()
            self.acked_timestamp = msg.timestamp()

    def __repr__(self) -> str:
        return f"Produced(key={self.key!r}, value={_short(self.value)}, p={self.partition}, off={self.offset})"


def _short(v):
    if isinstance(v, (bytes, bytearray)) and len(v) > 40:
        return f"<{len(v)} bytes {bytes(v[:20])!r}...>"
    return repr(v)


def produce_all(producer, topic: str, records: list[Produced], flush_every: int | None = None) -> None:
    """Produces every record, waits for all delivery reports, asserts each was acknowledged."""
    for i, r in enumerate(records):
        kwargs = {"key": r.key, "value": r.value, "on_delivery": r.on_delivery}
        if r.headers is not None:
            kwargs["headers"] = r.headers
        if r.timestamp is not None:
            kwargs["timestamp"] = r.timestamp
        producer.produce(topic, **kwargs)
        producer.poll(0)
        if flush_every and (i + 1) % flush_every == 0:
            _flush(producer)
    _flush(producer)
    failed = [(r, r.error) for r in records if r.error is not None]
    assert not failed, f"{len(failed)} of {len(records)} deliveries failed, first: {failed[:3]}"
    unreported = [r for r in records if r.offset is None]
    assert not unreported, f"{len(unreported)} records got no delivery report"


def _flush(producer) -> None:
    remaining = producer.flush(CLIENT_TIMEOUT)
    assert remaining == 0, f"producer.flush: {remaining} messages still undelivered after {CLIENT_TIMEOUT:.0f}s"


def new_producer(bootstrap: str, extra: dict[str, object] | None = None):
    from confluent_kafka import Producer

    conf = {
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": int(CLIENT_TIMEOUT * 1000),
        "linger.ms": 5,
    }
    conf.update(extra or {})
    return Producer(client_conf(bootstrap, conf))


class Consumed:
    def __init__(self, msg):
        self.topic = msg.topic()
        self.partition = msg.partition()
        self.offset = msg.offset()
        self.key = msg.key()
        self.value = msg.value()
        self.headers = msg.headers()
        self.timestamp = msg.timestamp()

    def __repr__(self) -> str:
        return f"Consumed(p={self.partition}, off={self.offset}, key={self.key!r}, value={_short(self.value)})"


def consume_all(bootstrap: str, topic: str, partitions: list[int], timeout: float = CLIENT_TIMEOUT) -> list[Consumed]:
    """Reads every record of the partitions from the beginning (assign(), no group protocol) until EOF on all."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        client_conf(
            bootstrap,
            {
                "group.id": unique("interop-assign"),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "error",
            },
        )
    )
    got: list[Consumed] = []
    errors: list[str] = []
    at_eof: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout
        while at_eof != set(partitions):
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s consuming {topic}: got {len(got)} records, "
                    f"EOF on partitions {sorted(at_eof)} of {partitions}; errors: {errors[-10:]}"
                )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                else:
                    errors.append(f"p{msg.partition()}: {err}")
                    if err.fatal():
                        raise AssertionError(f"fatal consumer error: {err}")
                continue
            at_eof.discard(msg.partition())
            got.append(Consumed(msg))
    finally:
        consumer.close()
    return got


def check_consumed_matches(produced: list[Produced], consumed: list[Consumed], check_timestamps: bool = True) -> None:
    """Every acknowledged record is read back exactly once at its acknowledged offset, nothing else."""
    by_pos = {}
    for c in consumed:
        assert (c.partition, c.offset) not in by_pos, f"offset read twice: {c}"
        by_pos[(c.partition, c.offset)] = c
    problems = []
    for r in produced:
        c = by_pos.pop((r.partition, r.offset), None)
        if c is None:
            problems.append(f"missing: {r}")
            continue
        if c.key != r.key:
            problems.append(f"key at p{r.partition}/{r.offset}: sent {r.key!r}, read {c.key!r}")
        if c.value != r.value:
            problems.append(f"value at p{r.partition}/{r.offset}: sent {_short(r.value)}, read {_short(c.value)}")
        if (c.headers or []) != (r.headers or []):
            problems.append(f"headers at p{r.partition}/{r.offset}: sent {r.headers!r}, read {c.headers!r}")
        if check_timestamps and c.timestamp != r.acked_timestamp:
            problems.append(f"timestamp at p{r.partition}/{r.offset}: acked {r.acked_timestamp}, read {c.timestamp}")
        if r.timestamp is not None and c.timestamp[1] != r.timestamp:
            problems.append(f"CreateTime at p{r.partition}/{r.offset}: sent {r.timestamp}, read {c.timestamp}")
    for c in by_pos.values():
        problems.append(f"unexpected extra record: {c}")
    assert not problems, f"{len(problems)} mismatches (of {len(produced)} sent, {len(consumed)} read):\n" + "\n".join(
        problems[:30]
    )


def check_key_partitioning_and_order(produced: list[Produced], first_offsets: dict[int, int] | None = None) -> None:
    """Same key -> same partition; per partition, offsets are contiguous in produce order.

    first_offsets: the offset each partition's first record must get (default 0: a fresh topic).
    """
    key_part: dict[bytes, int] = {}
    for r in produced:
        if r.key is None:
            continue
        seen = key_part.setdefault(r.key, r.partition)
        assert seen == r.partition, f"key {r.key!r} went to partitions {seen} and {r.partition}"
    first = first_offsets or {}
    last: dict[int, int] = {}
    for r in produced:
        want = last[r.partition] + 1 if r.partition in last else first.get(r.partition, 0)
        assert r.offset == want, (
            f"partition {r.partition}: record {r} acked at offset {r.offset}, expected {want} "
            f"(offsets must be contiguous in produce order)"
        )
        last[r.partition] = r.offset
