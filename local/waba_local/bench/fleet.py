"""The benchmark's instance processes: started, told when to begin, stopped, and what each saw when it ended.

Every instance is a process of its own (bench_instances.py), so each has its own imports, budget and clients, as
a Lambda instance does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT_SECONDS = 120.0
# instances yield the CPU to the stand-ins (the bench process: the emulator and the neighbour; moto's server): in
# the cloud those run on machines of their own, and on 2 cores a crowd of instances would otherwise slow their answers
INSTANCE_NICENESS = "10"


class Fleet:
    """The run's instance processes, and the JSON each writes when it ends."""

    def __init__(self, workdir: Path, naive: bool, logs: Path | None = None) -> None:
        self.workdir, self.naive, self.logs = workdir, naive, logs
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.killed: set[int] = set()

    def spawn(self, role: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        stats = self.workdir / f"{role}-{len(self.processes)}.json"
        command = ["nice", "-n", INSTANCE_NICENESS, sys.executable, "-m", "waba_local.bench.instances", role]
        command += ["--stats", str(stats), *args]
        # an instance's stdout is its Lambda log stream (Powertools logs, EMF metrics): not for this report
        log = open(self.logs / stats.with_suffix(".log").name, "w") if self.logs else subprocess.DEVNULL  # noqa: SIM115
        env = env | ({"POWERTOOLS_LOG_LEVEL": "INFO"} if self.logs else {})
        process = subprocess.Popen(command + (["--naive"] if self.naive else []), env=env, stdout=log)
        self.processes.append((process, stats))
        return process

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        self.killed.add(pid)

    def running(self) -> bool:
        return any(p.poll() is None for p, _ in self.processes)

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()

    def stats(self) -> list[dict[str, Any]]:
        return [json.loads(path.read_text()) for p, path in self.processes if p.returncode == 0 and path.exists()]

    def failed(self) -> int:
        """Instances that ended with an error (the one killed on purpose aside)."""
        return sum(1 for p, _ in self.processes if p.returncode not in (0, None) and p.pid not in self.killed)

    @property
    def go_file(self) -> Path:
        """Where `reads` and `hits` instances wait for the wall time to begin (see bench_instances)."""
        return self.workdir / "go"

    def wait_ready(self, count: int) -> None:
        """Until `count` instances have said they are warm."""
        give_up = time.monotonic() + READY_TIMEOUT_SECONDS
        while len(list(self.workdir.glob(f"{self.go_file.name}.ready-*"))) < count:
            if time.monotonic() > give_up:
                raise RuntimeError(f"only some of {count} instances got ready")
            time.sleep(0.05)

    def go(self, delay: float = 0.2) -> None:
        """Let the waiting instances begin, `delay` seconds from now, all at once."""
        self.go_file.with_suffix(".tmp").write_text(repr(time.time() + delay))
        self.go_file.with_suffix(".tmp").rename(self.go_file)
