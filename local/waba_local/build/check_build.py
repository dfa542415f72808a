"""Check what `sam build` produced, loaded the way Lambda will load it.

    python -m waba_local.build.check_build .aws-sam/build

Prints one line per check and exits 1 if any failed. What is checked: docs/architecture.md#the-builds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

RUNTIME = "python3.12"
# Lambda's Python runtimes ship boto3 and botocore; a layer may bring its own, which then wins.
RUNTIME_PACKAGES = ("boto3",)
# Imported only when CAMS is first called (cams.py, credentials.py), so importing the handler does not load them.
LAZY_IMPORTS = ("aws_lambda_powertools.utilities.parameters", "botocore.config")
# These load native extensions, so they import only where the host's architecture is the layer's.
LAZY_NATIVE_IMPORTS = (
    "alibabacloud_cams20200606.client",
    "alibabacloud_tea_openapi.utils_models",
    "alibabacloud_credentials.client",
    "darabonba.runtime",
)
ELF_MACHINES = {62: "x86_64", 183: "arm64"}
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())

# run by the build's own Python: the handler imports from the built paths and is callable, and so are the extras
PROBE_IMPORTS = """
import importlib, json, sys
paths, handler, imports = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
sys.path[:0] = paths
module_name, _, name = handler.rpartition(".")
module = importlib.import_module(module_name)
assert callable(getattr(module, name, None)), f"{handler} is not callable"
for extra in imports:
    importlib.import_module(extra)
"""
PROBE = PROBE_IMPORTS + "print(module.__file__)\n"


class _CfnLoader(yaml.SafeLoader):
    """Reads a CloudFormation template; an intrinsic function (`!Ref X`) becomes a one-key mapping ({"!Ref": "X"})."""


def _intrinsic(loader: yaml.SafeLoader, tag: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.MappingNode):
        return {tag: loader.construct_mapping(node, deep=True)}
    if isinstance(node, yaml.SequenceNode):
        return {tag: loader.construct_sequence(node, deep=True)}
    return {tag: loader.construct_scalar(node)}  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    with path.open() as stream:
        return yaml.load(stream, Loader=_CfnLoader)  # type: ignore[no-any-return]


def check_layer(name: str, layer: dict[str, Any], build: Path, source: Path, results: list[tuple[bool, str]]) -> None:
    """The layer's packages are byte-for-byte the source's; the lock is installed as pinned; natives fit the arch."""
    built = build / layer["Properties"]["ContentUri"] / "python"
    packages = sorted(p.parent for p in source.glob("*/__init__.py"))
    for package in packages:
        files = [f for f in package.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
        differ = [str(f.relative_to(source)) for f in files if not _same(f, built / f.relative_to(source))]
        summary = f"{name}: {package.name}/ ({len(files)} files) as in {source}"
        results.append(_result(summary, "missing or different", differ, empty_fails=not files))
    locked, installed = locked_versions(source / "requirements.txt"), installed_versions(built)
    wrong = [f"{dist}=={version}" for dist, version in locked.items() if installed.get(dist) != version]
    wrong += [f"{dist}=={version} (not locked)" for dist, version in installed.items() if dist not in locked]
    summary = f"{name}: the {len(locked)} distributions of {source / 'requirements.txt'} installed as locked"
    results.append(_result(summary, "missing or different", wrong, empty_fails=not locked))
    arch = layer.get("Metadata", {}).get("BuildArchitecture", "x86_64")
    natives = sorted(built.rglob("*.so"))
    wrong = [str(so.relative_to(built)) for so in natives if _elf_arch(so) != arch]
    results.append(_result(f"{name}: {len(natives)} native extensions, all {arch}", "other architecture", wrong))


def check_function(name: str, function: dict[str, Any], ctx: dict[str, Any], results: list[tuple[bool, str]]) -> None:
    """Import the handler in an isolated python3.12 that sees only what Lambda would put on sys.path."""
    properties = {**ctx["globals"], **function["Properties"]}
    handler, code = properties["Handler"], ctx["build"] / properties["CodeUri"]
    paths = [str(code), *ctx["layer_paths"], *ctx["runtime_paths"]]
    arch = (properties.get("Architectures") or ["x86_64"])[0]
    imports = [*LAZY_IMPORTS, *(LAZY_NATIVE_IMPORTS if arch == HOST_ARCH else ())]
    variables = {**ctx["globals"].get("Environment", {}).get("Variables", {})}
    variables.update(function["Properties"].get("Environment", {}).get("Variables", {}))
    # The template's literal variables (Powertools'), and what Lambda sets: Tracer, for one, behaves differently
    # inside Lambda (it patches boto3 through the X-Ray SDK at import).
    env = {k: str(v) for k, v in variables.items() if isinstance(v, (str, int))} | {
        "PATH": os.environ.get("PATH", ""),
        "LANG": "C.UTF-8",
        "AWS_DEFAULT_REGION": ctx["region"],
        "AWS_REGION": ctx["region"],
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{RUNTIME}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "LAMBDA_TASK_ROOT": str(code),
        "_HANDLER": handler,
    }
    argv = [ctx["python"], "-I", "-S", "-c", PROBE, json.dumps(paths), handler, json.dumps(imports)]
    run = subprocess.run(argv, check=False, capture_output=True, text=True, env=env, timeout=120)
    native = "with" if arch == HOST_ARCH else f"without (an {arch} layer on an {HOST_ARCH} host)"
    detail = f"{name}: {handler} imports in an isolated {RUNTIME}, {native} the CAMS SDK's native modules"
    results.append((run.returncode == 0, detail + ("" if run.returncode == 0 else "\n" + _last_lines(run.stderr))))


def find_python() -> str:
    """pyenv's newest 3.12 (as the Makefile puts on PATH for sam build), else python3.12 on PATH."""
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = ""
    versions = sorted(Path(root, "versions").glob("3.12*/bin/python3.12") if root else [], key=_version_key)
    found = str(versions[-1]) if versions else shutil.which("python3.12")
    if not found:
        raise SystemExit("check_build: python3.12 not found (install it with pyenv, or put it on PATH)")
    return found


def runtime_paths(python: str, layer_paths: list[str], cache: Path) -> list[str]:
    """A stand-in for the runtime's own boto3, installed once into the build's cache, unless a layer brings it."""
    if all(any(Path(p, pkg).is_dir() for p in layer_paths) for pkg in RUNTIME_PACKAGES):
        return []
    if not all((cache / pkg).is_dir() for pkg in RUNTIME_PACKAGES):
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--root-user-action=ignore"]
        pip += ["--only-binary=:all:", "--target", str(cache), *RUNTIME_PACKAGES]
        run = subprocess.run(pip, check=False, capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"check_build: could not install {', '.join(RUNTIME_PACKAGES)}:\n{run.stderr}")
    return [str(cache)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path, nargs="?", default=Path(".aws-sam/build"), help="sam build's output")
    parser.add_argument("--source", type=Path, default=Path("."), help="the project root (template.yaml's folder)")
    parser.add_argument("--region", default="ap-southeast-1")
    args = parser.parse_args(argv)
    built, source = load_template(args.build / "template.yaml"), load_template(args.source / "template.yaml")
    resources = built.get("Resources", {})
    layers = {n: r for n, r in resources.items() if r["Type"] == "AWS::Serverless::LayerVersion"}
    functions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    results: list[tuple[bool, str]] = []
    for name, layer in layers.items():
        layer_source = args.source / source["Resources"][name]["Properties"]["ContentUri"]
        check_layer(name, layer, args.build, layer_source, results)
    python = find_python()
    layer_paths = [str(args.build / layer["Properties"]["ContentUri"] / "python") for layer in layers.values()]
    ctx = {
        "build": args.build,
        "python": python,
        "region": args.region,
        "layer_paths": layer_paths,
        "runtime_paths": runtime_paths(python, layer_paths, args.build.parent / "check-build" / "runtime"),
        "globals": built.get("Globals", {}).get("Function", {}),
    }
    for name, function in functions.items():
        check_function(name, function, ctx, results)
    for ok, line in results:
        print(("ok    " if ok else "FAIL  ") + line)
    failed = sum(not ok for ok, _ in results)
    print(f"check_build: {len(results) - failed} passed, {failed} failed ({python})")
    return 1 if failed or not functions or not layers else 0


def _result(summary: str, label: str, problems: list[str], empty_fails: bool = False) -> tuple[bool, str]:
    ok = not problems and not empty_fails
    return ok, summary + (f"; {label}: {', '.join(problems)}" if problems else "")


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and a.read_bytes() == b.read_bytes()


def locked_versions(lock: Path) -> dict[str, str]:
    """A lock's `name==version` pins (its `--hash` and comment lines aside), by normalised name."""
    pins = (_PIN.match(line) for line in lock.read_text().splitlines())
    return {_normalise(pin.group("name")): pin.group("version") for pin in pins if pin}


def installed_versions(site: Path) -> dict[str, str]:
    """The distributions installed in a site folder (their .dist-info), by normalised name."""
    dists = (p.name.removesuffix(".dist-info").rsplit("-", 1) for p in site.glob("*.dist-info"))
    return {_normalise(name): version for name, version in dists}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _elf_arch(path: Path) -> str:
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return "not ELF"
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"machine {machine}")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))


def _last_lines(text: str, count: int = 6) -> str:
    return "\n".join("      " + line for line in text.strip().splitlines()[-count:])


if __name__ == "__main__":
    sys.exit(main())
