"""Hatchling build hook: with FBOC_COMPILE=1, the wheel carries the transform and the loop's
per-record path compiled by mypyc.

The modules listed as `compile` under `[tool.hatch.build.targets.wheel.hooks.custom]` in
pyproject.toml (the pure dialect and hashing code, where fboc spends most of its CPU, and the
per-record stages, ledger and batching) are compiled
to C extensions in a scratch copy of the tree, never in the checkout, and added to the wheel next
to their sources: Python imports an extension module before a `.py` of the same name. The wheel is
then tagged for this interpreter and platform. Without FBOC_COMPILE=1 the wheel is pure Python.

Needs mypy (which brings mypyc), setuptools >= 77 and a C compiler in the build environment
(the Dockerfile's build stage; `scripts/test-compiled`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ENABLE = "FBOC_COMPILE"


class CompileHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        # editable installs (scripts/setup) stay plain: their sources are the code that runs
        if self.target_name != "wheel" or version == "editable" or os.environ.get(ENABLE) != "1":
            return
        modules = [str(m) for m in self.config["compile"]]
        self._scratch = Path(tempfile.mkdtemp(prefix="fboc-mypyc-"))
        root = Path(self.root)
        shutil.copytree(
            root / "consumer",
            self._scratch / "consumer",
            ignore=shutil.ignore_patterns("__pycache__", "*.so"),
        )
        shutil.copy(root / "pyproject.toml", self._scratch)  # mypy's settings
        shutil.copy(root / "README.md", self._scratch)  # setuptools reads [project] too
        done = subprocess.run(  # noqa: S603 (our own module list)
            [sys.executable, "-m", "mypyc", *modules],
            cwd=self._scratch,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"mypyc failed:\n{done.stdout[-4000:]}")
        extensions = [
            p for p in self._scratch.rglob("*.so") if "build" not in p.relative_to(self._scratch).parts
        ]
        build_data["force_include"].update({str(p): str(p.relative_to(self._scratch)) for p in extensions})
        build_data["infer_tag"] = True
        build_data["pure_python"] = False

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
