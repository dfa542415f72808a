"""Today's budget beside yesterday's: `make bench` runs the older algorithm (every waiter wakes at the earliest
moment a slot might free and races with conditional writes) from the commit before the ordered line, taken out
of this repository's own history, so both are measured in the same run on the same machine."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

RACE_COMMIT = "591267a"  # the last commit whose budget raced instead of queueing
ROOT = Path(__file__).resolve().parents[3]


def race_library() -> Path | None:
    """A directory holding that commit's waba_lookup package (put it first on PYTHONPATH), with its handlers beside
    it in ../functions (WABA_FUNCTIONS_DIR: today's handlers need today's library); None outside a git checkout
    with that history."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", RACE_COMMIT, "layers/waba_lookup", "functions"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    where = Path(tempfile.mkdtemp(prefix="waba-race-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return where / "layers"
