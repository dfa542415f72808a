"""Building and testing the package is quiet: no setuptools deprecation for the licence, and the SDK's own
`datetime.utcnow()` deprecations (Python 3.12+) are filtered by module, not every DeprecationWarning."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_building_the_package_gives_no_licence_warning(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(ROOT)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    output = built.stdout + built.stderr
    assert "project.license" not in output and "License classifiers" not in output, output
    [wheel] = tmp_path.glob("waba_lookup-*.whl")
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata


def emitted(module: str, message: str) -> list[str]:
    """The modules of the DeprecationWarnings that get through the test run's filters for a warning from `module`."""
    with warnings.catch_warnings(record=True) as seen:  # keeps the filters pytest applies from pyproject.toml
        warnings.warn_explicit(message, DeprecationWarning, f"{module}.py", 1, module=module, registry={})
    return [str(w.message) for w in seen]


UTCNOW = "datetime.datetime.utcnow() is deprecated and scheduled for removal in a future version."


@pytest.mark.parametrize(
    "module", ["alibabacloud_tea_openapi.utils", "alibabacloud_credentials.utils.parameter_helper"]
)
def test_the_sdk_s_utcnow_deprecations_are_filtered(module: str) -> None:
    assert emitted(module, UTCNOW) == []


@pytest.mark.parametrize("module", ["waba_lookup.cache", "waba_local.stand_ins.emulator"])
def test_our_own_deprecations_still_show(module: str) -> None:
    assert emitted(module, UTCNOW) == [UTCNOW]


def test_other_deprecations_of_the_sdk_still_show() -> None:
    assert emitted("alibabacloud_tea_openapi.utils", "something else is deprecated") == ["something else is deprecated"]


def test_the_tablestore_floor_has_the_credentials_provider_the_budget_uses() -> None:
    import re
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    [requirement] = [r for r in project["dependencies"] if r.startswith("tablestore")]
    floor = re.search(r">=\s*(\d+)\.(\d+)", requirement)
    assert floor is not None and (int(floor[1]), int(floor[2])) >= (6, 2), requirement  # 6.1 has no such argument
