"""Build what s.yaml deploys to Function Compute into .fc-build/, then check it loads the way FC will load it.

    python -m waba_local.build.build_fc

Writes .fc-build/layer.zip and .fc-build/<function>/; exits 1 if any check failed.
What is built and checked: docs/architecture.md#the-builds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from waba_local.build import s_yaml
from waba_local.build.check_build import (
    PROBE_IMPORTS,
    _elf_arch,
    _last_lines,
    find_python,
    installed_versions,
    locked_versions,
)

ROOT = Path(__file__).resolve().parents[3]
BUILD = ROOT / ".fc-build"
LAYER_ZIP = BUILD / "layer.zip"
REQUIREMENTS = ROOT / "layers" / "requirements-fc.txt"
LIBRARY = ROOT / "layers" / "waba_lookup"
FUNCTIONS = {"http_api": "app.handler", "queue_worker": "app.handler"}  # code under functions/ -> s.yaml's handler
PLATFORM = ["--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.12"]
# Imported by the handlers only when first needed (CAMS, credentials, OSS, SMQ's sends, Tablestore's budget at the
# first CAMS call): import them too, so that a dependency missing from the layer, or a native that does not load,
# fails here and not at the first refresh.
LAZY_IMPORTS = (
    "alibabacloud_cams20200606.client",
    "alibabacloud_credentials.client",
    "alibabacloud_oss_v2",
    "mns.account",
    "mns.queue",
    "tablestore",
    "tablestore.credentials",
)
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")
PROBE = (
    PROBE_IMPORTS
    + """
# the shared budget as s.yaml deploys it: the Tablestore log, and its client (nothing is sent)
from waba_lookup.compose import budget_for
from waba_lookup.credentials import EnvironmentCredentials
from waba_lookup.budget.tablestore import TablestoreLogStore, build_client
from waba_lookup.settings import get_settings
settings = get_settings()
budget = budget_for(settings)
assert type(budget).__name__ == "SharedBudget" and isinstance(budget.store, TablestoreLogStore), budget
build_client(settings.tablestore_endpoint, settings.tablestore_instance, EnvironmentCredentials())
assert "boto3" not in sys.modules, "boto3 was imported: it is not in the FC layer"
if len(sys.argv) > 4:  # an event that needs no cloud: the adapter, the handler's logic and its answer end to end
    class Function: name, memory, timeout, qualifier = "probe", 512, 20, "LATEST"
    class Context: request_id, function, region, account_id = "1-probe", Function(), "ap-southeast-1", "1"
    answer = getattr(module, name)(open(sys.argv[4], "rb").read(), Context())
    if sys.argv[5] == "http":  # an invalid request: the router and the error mapping
        assert answer["statusCode"] == 400 and json.loads(answer["body"])["Code"] == "InvalidParameter", answer
    else:  # an empty batch: the queues are configured, nothing is refreshed, re-sent or dead-lettered
        assert answer == {"received": 0, "resent": 0, "deadLettered": 0}, answer
print(module.__file__)
"""
)
# an event per function that the built function must answer without reaching any cloud, and what kind of answer
PROBE_EVENTS: dict[str, tuple[str, Path | bytes]] = {
    "http_api": ("http", ROOT / "events" / "fc-http-invalid-cust-space-id.json"),
    "queue_worker": ("queue", b"[]"),  # the SMQ trigger's CloudEvents array, empty
}
NOWHERE = "http://127.0.0.1:9"  # the discard port: the probes' cloud addresses, never called


def probe_environment(name: str) -> dict[str, str]:
    """The function's environment as s.yaml deploys it (its shared budget, its queues' URLs, which the worker needs
    before it reads a batch), every cloud address moved to NOWHERE."""
    document = s_yaml.rendered()
    (resource,) = [r for r, props in s_yaml.functions(document).items() if props["code"] == f"./.fc-build/{name}"]
    environment = s_yaml.deployed_environment(document, resource)
    for variable, value in environment.items():
        if value.startswith(("http://", "https://")):
            environment[variable] = NOWHERE + urlsplit(value).path
    return environment | {"OSS_ENDPOINT": NOWHERE}  # instead of the region's internal one


def build_layer() -> None:
    """pip-install the lock as x86_64 CPython 3.12 wheels into python/ (hash-checked), add waba_lookup, zip it."""
    target = BUILD / "layer" / "python"
    print(f"build_fc: installing {REQUIREMENTS.relative_to(ROOT)} for python3.12 manylinux2014_x86_64 ...", flush=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    # --require-hashes: a lock that lost its hashes, or misses a dependency, stops the build
    pip += ["--target", str(target), *PLATFORM, "--only-binary=:all:", "--require-hashes", "-r", str(REQUIREMENTS)]
    run = subprocess.run(pip, check=False, capture_output=True, text=True)
    if run.returncode:
        # --only-binary=:all: is required with --platform: a dependency that publishes no wheel for it stops here
        raise SystemExit(f"build_fc: pip failed (a dependency without a cp312/abi3/py3 wheel?):\n{run.stderr}")
    for foreign in drop_foreign_natives(target):
        print(f"build_fc: dropped {foreign.relative_to(target)}: not a Linux binary, never loaded on FC", flush=True)
    shutil.copytree(LIBRARY, target / LIBRARY.name, ignore=IGNORED)
    print(f"build_fc: zipping {target.parent.relative_to(ROOT)} into {LAYER_ZIP.relative_to(ROOT)} ...", flush=True)
    with zipfile.ZipFile(LAYER_ZIP, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(target.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(target.parent).as_posix())
    print(f"build_fc: {LAYER_ZIP.relative_to(ROOT)} is {LAYER_ZIP.stat().st_size / 1e6:.1f} MB", flush=True)


def drop_foreign_natives(site: Path) -> list[Path]:
    """Delete the shared objects built for another OS, which Python on Linux never loads: tablestore's pure-Python
    wheel (py3-none-any) ships a macOS one (native_plainbuffer.cpython-313-darwin.so) beside its Linux ones."""
    foreign = [so for so in sorted(site.rglob("*.so")) if _elf_arch(so) == "not ELF"]
    for so in foreign:
        so.unlink()
    return foreign


def build_functions() -> None:
    for name in FUNCTIONS:
        shutil.copytree(ROOT / "functions" / name, BUILD / name, ignore=IGNORED)
        print(f"build_fc: functions/{name}/ -> {(BUILD / name).relative_to(ROOT)}/", flush=True)


def check_layer(opt: Path, results: list[tuple[bool, str]]) -> None:
    """The zip holds python/ with exactly the locked versions, waba_lookup as in the source, and only x86_64 natives."""
    site = opt / "python"
    locked, installed = locked_versions(REQUIREMENTS), installed_versions(site)
    wrong = [f"{name}=={version}" for name, version in locked.items() if installed.get(name) != version]
    extra = [f"{name}=={version}" for name, version in installed.items() if name not in locked]
    summary = f"layer.zip: python/ holds the {len(locked)} distributions of {REQUIREMENTS.relative_to(ROOT)} as locked"
    results.append((bool(locked) and not wrong and not extra, summary + _also(wrong + extra)))
    sources = [f for f in LIBRARY.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    built = site / LIBRARY.name
    differ = [str(f.relative_to(LIBRARY)) for f in sources if not _same(f, built / f.relative_to(LIBRARY))]
    results.append((not differ, f"layer.zip: python/waba_lookup/ ({len(sources)} files) as in layers/" + _also(differ)))
    natives = sorted(site.rglob("*.so"))
    wrong = [str(so.relative_to(site)) for so in natives if _elf_arch(so) != "x86_64"]
    results.append((not wrong, f"layer.zip: {len(natives)} native extensions, all x86_64" + _also(wrong)))


def check_function(name: str, handler: str, python: str, opt: Path, results: list[tuple[bool, str]]) -> None:
    """Import the handler as FC's python3.12 runtime would: the code directory, then the layer's /opt/python."""
    code = BUILD / name
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "FC_FUNCTION_NAME": f"waba-lookup-{name}"}
    env |= {"FC_REGION": "ap-southeast-1", "FC_FUNCTION_HANDLER": handler, "POWERTOOLS_SERVICE_NAME": "waba-lookup"}
    env |= probe_environment(name) | {"POWERTOOLS_LOG_LEVEL": "WARNING"}
    argv = [python, "-I", "-S", "-c", PROBE, json.dumps([str(code), str(opt / "python")]), handler]
    argv.append(json.dumps(LAZY_IMPORTS))
    if name in PROBE_EVENTS:
        kind, event = PROBE_EVENTS[name]
        event_file = opt.parent / f"{name}-event.json"
        event_file.write_bytes(event if isinstance(event, bytes) else event.read_bytes())
        argv += [str(event_file), kind]
    run = subprocess.run(argv, check=False, capture_output=True, text=True, env=env)
    detail = f"{name}: {handler} imports in an isolated python3.12 from .fc-build/{name} and the layer alone, builds"
    detail += " the Tablestore budget"
    detail += f" and answers a sample {PROBE_EVENTS[name][0]} event" if name in PROBE_EVENTS else ""
    results.append((run.returncode == 0, detail + ("" if run.returncode == 0 else "\n" + _last_lines(run.stderr))))


def main() -> int:
    python = find_python()  # before building: no point in building for a check that cannot run
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir()
    build_layer()
    build_functions()
    opt = BUILD / "check" / "opt"
    with zipfile.ZipFile(LAYER_ZIP) as archive:
        archive.extractall(opt)  # zipfile drops the mode bits, which nothing here needs: the .so files are dlopen'ed
    results: list[tuple[bool, str]] = []
    check_layer(opt, results)
    print(f"build_fc: importing the handlers with {python} ...", flush=True)
    for name, handler in FUNCTIONS.items():
        check_function(name, handler, python, opt, results)
    for ok, line in results:
        print(("ok    " if ok else "FAIL  ") + line)
    failed = sum(not ok for ok, _ in results)
    print(f"build_fc: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _also(problems: list[str]) -> str:
    return f"; missing or different: {', '.join(problems)}" if problems else ""


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and a.read_bytes() == b.read_bytes()


if __name__ == "__main__":
    sys.exit(main())
