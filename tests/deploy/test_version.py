"""One version for the package, the image and the chart: pyproject.toml's `version`, the image's
`org.opencontainers.image.version` label and the chart's `appVersion` (the image tag it deploys by
default) must agree. The chart's own `version` moves on its own (every chart change bumps it)."""

from __future__ import annotations

import re
import tomllib

import yaml
from packaging.version import Version

from tests.deploy.conftest import CHART, REPO

LABEL = re.compile(r'^LABEL\s+org\.opencontainers\.image\.version="([^"]+)"\s*$', re.MULTILINE)


def package_version() -> str:
    version: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return version


def image_version() -> str:
    """The label of the final stage: labels of a build stage do not reach the image."""
    final_stage = re.split(r"^FROM\s", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)[-1]
    labels = LABEL.findall(final_stage)
    assert len(labels) == 1, "the final stage needs exactly one org.opencontainers.image.version label"
    return str(labels[0])


def chart() -> dict[str, object]:
    meta: dict[str, object] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return meta


def test_package_image_and_chart_app_version_agree() -> None:
    version = package_version()
    assert str(Version(version)) == version  # a plain release number, as pip writes it
    assert image_version() == version
    assert chart()["appVersion"] == version  # a string: quoted in Chart.yaml


def test_the_chart_version_is_semver() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?", str(chart()["version"]))


def test_the_changelog_has_an_entry_for_the_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(
        rf"^## \[{re.escape(package_version())}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.MULTILINE
    )
