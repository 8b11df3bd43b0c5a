"""hatch_build.py compiles only a standard wheel build asked for with FBOC_COMPILE=1; that build
itself is tested by scripts/test-compiled, which runs the tests against it."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from tests.deploy.conftest import REPO


def compile_hook(target_name: str) -> Any:
    spec = importlib.util.spec_from_file_location("fboc_hatch_build", REPO / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CompileHook(
        str(REPO), {"compile": ["consumer/core/routing.py"]}, None, None, "", target_name
    )


@pytest.mark.parametrize(
    ("version", "target_name", "enabled"),
    [
        ("editable", "wheel", "1"),  # scripts/setup's `pip install -e`: its sources must run
        ("standard", "sdist", "1"),
        ("standard", "wheel", None),
        ("standard", "wheel", "0"),
    ],
)
def test_builds_stay_plain_python_unless_a_wheel_is_asked_compiled(
    version: str, target_name: str, enabled: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if enabled is None:
        monkeypatch.delenv("FBOC_COMPILE", raising=False)
    else:
        monkeypatch.setenv("FBOC_COMPILE", enabled)
    build_data: dict[str, Any] = {"force_include": {}, "infer_tag": False, "pure_python": True}
    compile_hook(target_name).initialize(version, build_data)
    assert build_data == {"force_include": {}, "infer_tag": False, "pure_python": True}
