"""`make serve` in a subprocess on a free port, for the tests that talk to it over HTTP (test_serve, test_fuzz_api)."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

STARTUP_SECONDS = 60


@dataclass
class Served:
    host: str
    port: int
    banner: list[str]

    def examples(self) -> list[str]:
        """The banner's curl lines that call the API (not the emulator's control plane)."""
        lines = (line.strip() for line in self.banner)
        return [line for line in lines if line.startswith("curl ") and f":{self.port}/" in line]

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()


def start_serve(platform: str, **env: str) -> tuple[subprocess.Popen[str], Served]:
    """`python -m waba_local.dev.serve --platform … --port 0` with the stand-ins; its banner, read up to the examples."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CAMS_", "ALIBABA_CLOUD_", "CACHE_", "AWS_"))}
    environ |= {"PYTHONUNBUFFERED": "1", "POWERTOOLS_LOG_LEVEL": "WARNING"} | env
    process = subprocess.Popen(
        [sys.executable, "-m", "waba_local.dev.serve", "--platform", platform, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environ,
    )
    banner: list[str] = []
    assert process.stdout is not None
    threading.Thread(target=lambda: banner.extend(line.rstrip("\n") for line in process.stdout), daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and not any(line.startswith("Ready") for line in banner):
        assert process.poll() is None, banner
        time.sleep(0.1)
    match = re.search(r"http://([\d.]+):(\d+)", banner[0] if banner else "")
    if not (match and int(match[2]) > 0 and any(line.startswith("Ready") for line in banner)):
        process.kill()
        pytest.fail(f"make serve did not start: {banner}")
    return process, Served(match[1], int(match[2]), banner)
