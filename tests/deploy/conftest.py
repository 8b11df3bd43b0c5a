"""Fixtures for the deployment tests: a real helm binary, chart rendering, `fboc check-config`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "fboc"
ALL_ON_VALUES = CHART / "ci" / "all-on-values.yaml"
HELM_SCRIPT = REPO / "scripts" / "helm"
PROMTOOL_SCRIPT = REPO / "scripts" / "promtool"
# The first build of helm (go install) takes minutes on a cold machine.
HELM_BUILD_TIMEOUT_S = 1500
RELEASE = "fboc"
NAMESPACE = "conversions"

Manifest = dict[str, Any]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def fail_or_skip(reason: str) -> None:
    """CI must not pass by skipping: there a missing tool is a failure."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


class HelmError(Exception):
    def __init__(self, args: Sequence[str], stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} failed: {stderr}")
        self.stderr = stderr


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str) -> str:
        proc = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            raise HelmError(args, proc.stderr)
        return proc.stdout

    def template(
        self,
        *,
        chart: Path = CHART,
        values: Sequence[Path] = (),
        sets: Mapping[str, str] | None = None,
        set_strings: Mapping[str, str] | None = None,
    ) -> list[Manifest]:
        args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
        for path in values:
            args += ["--values", str(path)]
        for key, value in (sets or {}).items():
            args += ["--set", f"{key}={value}"]
        for key, value in (set_strings or {}).items():
            args += ["--set-string", f"{key}={value}"]
        return [doc for doc in yaml.safe_load_all(self.run(*args)) if doc]


@pytest.fixture(scope="session")
def helm() -> Helm:
    """scripts/helm's binary: built once with `go install` and cached under ~/.cache/fboc."""
    if shutil.which("bash") is None:
        fail_or_skip("bash is needed to run scripts/helm")
    try:
        proc = subprocess.run(
            ["bash", str(HELM_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=HELM_BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        fail_or_skip(f"scripts/helm did not finish within {HELM_BUILD_TIMEOUT_S} s")
        raise AssertionError("unreachable") from None
    lines = proc.stdout.strip().splitlines()
    binary = Path(lines[-1]) if lines else None
    if proc.returncode != 0 or binary is None or not binary.is_file():
        fail_or_skip(
            "helm is unavailable: scripts/helm (go install helm.sh/helm/v3) failed:\n"
            + proc.stderr.strip()[-3000:]
        )
        raise AssertionError("unreachable")
    return Helm(binary)


@dataclass(frozen=True)
class Promtool:
    binary: Path

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False
        )


@pytest.fixture(scope="session")
def promtool() -> Promtool:
    """scripts/promtool's binary: built once with `go install` and cached under ~/.cache/fboc."""
    try:
        proc = subprocess.run(
            ["bash", str(PROMTOOL_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=HELM_BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        fail_or_skip(f"scripts/promtool did not finish within {HELM_BUILD_TIMEOUT_S} s")
        raise AssertionError("unreachable") from None
    lines = proc.stdout.strip().splitlines()
    binary = Path(lines[-1]) if lines else None
    if proc.returncode != 0 or binary is None or not binary.is_file():
        fail_or_skip(
            "promtool is unavailable: scripts/promtool (go install "
            "github.com/prometheus/prometheus/cmd/promtool) failed:\n" + proc.stderr.strip()[-3000:]
        )
        raise AssertionError("unreachable")
    return Promtool(binary)


def by_kind(manifests: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: Sequence[Manifest], kind: str) -> Manifest:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def rendered_config(manifests: Sequence[Manifest]) -> str:
    """fboc.yaml from the configuration ConfigMap (the dashboard has a ConfigMap of its own)."""
    maps = [m for m in by_kind(manifests, "ConfigMap") if "fboc.yaml" in m.get("data", {})]
    assert len(maps) == 1, f"expected one ConfigMap with fboc.yaml, got {len(maps)}"
    config: str = maps[0]["data"]["fboc.yaml"]
    return config


@dataclass(frozen=True)
class CheckResult:
    returncode: int
    stdout: str
    stderr: str


def check_config(config_path: Path, env: Mapping[str, str] | None = None) -> CheckResult:
    """`fboc check-config --config FILE` in a child process, run from the repository root."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FBOC_") and not k.startswith("FB_")}
    child_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "consumer.ops.cli", "check-config", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=child_env,
        check=False,
    )
    return CheckResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def secret_files(tmp_path: Path) -> Path:
    """A stand-in for the Secret volume the chart mounts at /var/run/secrets/fboc."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "access-token").write_text("test-access-token\n")
    (directory / "app-secret").write_text("test-app-secret\n")
    return directory
