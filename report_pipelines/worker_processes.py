"""``report-pipelines worker`` processes on this machine: started, watched, stopped (demo, benchmark, tests).

Each worker is its own process group (``start_new_session``), so :meth:`Worker.kill` takes its Celery pool
processes with it, as a host that is lost would, and :meth:`Worker.stop` is a warm shutdown (SIGTERM:
finish the batch in hand, then exit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Worker:
    hostname: str
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes (a host lost at once)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def lines(self, marker: str = "client-day ") -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if marker in line]


def start_worker(hostname: str, env: dict[str, str], log: Path, *, concurrency: int = 1,
                 prefix: Sequence[str] = ()) -> Worker:
    """``report-pipelines worker`` named ``hostname`` with ``env`` over this environment, its output in ``log``;
    ``prefix`` runs it inside something (``ip netns exec NS``)."""
    exe = str(Path(sys.executable).with_name("report-pipelines"))
    handle = log.open("w")
    process = subprocess.Popen([*prefix, exe, "worker", "--concurrency", str(concurrency), "--hostname", hostname],
                               env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    return Worker(hostname, process, log)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, workers: Sequence[Worker] = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for w in workers:
            if w.process.poll() is not None:
                raise AssertionError(f"worker {w.hostname} exited ({w.process.returncode}):\n{w.log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
