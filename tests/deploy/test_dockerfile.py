"""Dockerfile, .dockerignore, the pinned requirements and the image's health check.

No Docker engine here: the Dockerfile is parsed and checked for what the image must be (slim base,
non-root, no build tools, pinned dependencies, `fboc` entrypoint, a HEALTHCHECK), the build context
is checked to hold what the Dockerfile copies, and healthcheck.py runs against a local server.
"""

from __future__ import annotations

import fnmatch
import http.server
import importlib.util
import json
import re
import socket
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
REQUIREMENTS = REPO / "deploy" / "requirements.txt"
BUILD_REQUIREMENTS = REPO / "deploy" / "requirements-build.txt"
HEALTHCHECK = REPO / "deploy" / "healthcheck.py"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "cmake", "clang", "apt-get", "apk ")


@dataclass(frozen=True)
class Instruction:
    name: str
    args: str


def instructions() -> list[Instruction]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        result.append(Instruction(name.upper(), rest.strip()))
    return result


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions():
        if instruction.name == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def global_args() -> dict[str, str]:
    result = {}
    for instruction in instructions():
        if instruction.name == "FROM":
            break
        if instruction.name == "ARG" and "=" in instruction.args:
            key, value = instruction.args.split("=", 1)
            result[key] = value
    return result


def final_stage() -> list[Instruction]:
    return stages()[-1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not exec form: {args}"
    return [str(v) for v in value]


def ignored(path: str) -> bool:
    """.dockerignore semantics for the patterns this repository uses: last match wins."""
    result = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, pattern[3:]) for part in path.split("/"))
        else:
            matched = fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/")
        if matched:
            result = not negate
    return result


def pins(path: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        result[canonicalize_name(match.group(1))] = match.group(2)
    return result


# --- the image ---------------------------------------------------------------------------------


def test_two_stages_the_final_one_on_a_slim_python_base() -> None:
    build, final = stages()
    args = global_args()
    version = args["PYTHON_VERSION"]
    assert re.fullmatch(r"3\.1[1-9][.0-9]*", version), version
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    assert final[0].args.split()[0] == "${PYTHON_IMAGE}"
    assert args["PYTHON_IMAGE"] == "python:${PYTHON_VERSION}-slim-bookworm"
    # The build stage compiles (C extensions for this Python): the same Python and Debian release,
    # on the image that has a compiler.
    assert build[0].args.split()[0] == "${BUILD_IMAGE}"
    assert args["BUILD_IMAGE"] == "python:${PYTHON_VERSION}-bookworm"


def test_build_stage_compiles_the_transform_and_checks_it() -> None:
    build = " ".join(i.args for i in stages()[0] if i.name == "RUN")
    assert "FBOC_COMPILE=1 /opt/build/bin/pip wheel" in build
    assert "m.__file__.endswith('.so')" in build
    copied = " ".join(i.args for i in stages()[0] if i.name == "COPY")
    assert "hatch_build.py" in copied


def test_final_stage_runs_fboc_as_a_non_root_user() -> None:
    stage = final_stage()
    users = [i.args for i in stage if i.name == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0
    assert any(f"--uid {uid}" in i.args for i in stage if i.name == "RUN")
    (entrypoint,) = [exec_form(i.args) for i in stage if i.name == "ENTRYPOINT"]
    assert entrypoint == ["fboc"]
    (cmd,) = [exec_form(i.args) for i in stage if i.name == "CMD"]
    assert cmd == ["run", "--config", "/etc/fboc/fboc.yaml"]


def test_final_stage_has_no_build_tools() -> None:
    for instruction in final_stage():
        if instruction.name == "RUN":
            for tool in BUILD_TOOLS:
                assert tool not in instruction.args, f"final stage runs {tool}: {instruction.args}"
    copies_from_build = [i.args for i in final_stage() if i.name == "COPY" and i.args.startswith("--from=")]
    assert copies_from_build == ["--from=build /opt/fboc /opt/fboc"]
    # Dependencies are installed from wheels only, and pip is removed from the runtime venv.
    build = " ".join(i.args for i in stages()[0] if i.name == "RUN")
    assert build.count("--only-binary=:all:") == 2
    assert "--no-deps -r deploy/requirements.txt" in build
    assert "pip uninstall --yes pip" in build
    assert "pip check" in build


def test_healthcheck_probes_healthz_on_the_service_port() -> None:
    stage = final_stage()
    (health,) = [i.args for i in stage if i.name == "HEALTHCHECK"]
    command = exec_form(health.split(" CMD ", 1)[1])
    assert command == ["python", "/opt/fboc/healthcheck.py"]
    assert "COPY deploy/healthcheck.py /opt/fboc/healthcheck.py" in [
        f"COPY {i.args}" for i in stage if i.name == "COPY"
    ]
    exposed = [int(i.args) for i in stage if i.name == "EXPOSE"]
    config = pytest.importorskip("consumer.config.settings")
    default_port = config.ServiceSettings().port
    assert exposed == [default_port]
    healthcheck_port = load_healthcheck().DEFAULT_PORT
    assert healthcheck_port == default_port


def test_build_context_holds_everything_the_dockerfile_copies() -> None:
    for stage in stages():
        for instruction in stage:
            if instruction.name != "COPY" or instruction.args.startswith("--from="):
                continue
            *sources, _destination = instruction.args.split()
            for source in sources:
                path = REPO / source
                assert path.exists(), f"COPY {source}: missing"
                assert not ignored(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"
                if path.is_dir():
                    assert any(path.iterdir()), f"COPY {source}: empty directory"
    for private in (
        ".venv",
        ".git",
        "tests",
        "helm",
        "tests/deploy/test_dockerfile.py",
        "consumer/__pycache__/x.pyc",
        "deploy/compose/fboc.yaml",
    ):
        assert ignored(private), f"{private} would be sent to the Docker daemon"


# --- pinned dependencies -----------------------------------------------------------------------


def test_runtime_requirements_pin_every_dependency_within_pyproject_ranges() -> None:
    pinned = pins(REQUIREMENTS)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert canonicalize_name(project["name"]) not in pinned
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not pinned in {REQUIREMENTS.name}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{name}=={pinned[name]} is outside {requirement.specifier}"
        )


def test_build_requirements_pin_the_build_backend() -> None:
    pinned = pins(BUILD_REQUIREMENTS)
    build_system = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    assert build_system["build-backend"] == "hatchling.build"
    for spec in build_system["requires"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pinned
        assert requirement.specifier.contains(pinned[name], prereleases=True)


# --- healthcheck.py ----------------------------------------------------------------------------


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fboc_healthcheck", HEALTHCHECK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_healthcheck_script(health_server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_healthcheck()
    port = str(health_server)
    assert module.main(["--port", port]) == 0
    assert module.main(["--port", port, "--path", "/readyz"]) == 1
    assert module.main(["--port", port, "--tcp"]) == 0
    closed = str(free_port())
    assert module.main(["--port", closed, "--timeout", "1"]) == 1
    assert module.main(["--port", closed, "--tcp", "--timeout", "1"]) == 1
    # The default port follows service.port's environment override, as fboc itself does.
    monkeypatch.setenv("FBOC_SERVICE__PORT", port)
    assert module.default_port() == health_server
    assert module.main([]) == 0
