"""The Prometheus configuration, alert rules and Grafana dashboard under deploy/: valid for
promtool (mandatory in CI, which installs Debian's prometheus package), and naming only
metrics the hub exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import hub.server  # noqa: F401  (imports every stage, so every family is registered)
from hub.metrics import REGISTRY

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_NAME = re.compile(r"\bdsop_hub_[a-z_]+")


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return found


@pytest.mark.parametrize(
    "command",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["config", "rules", "rule-tests"],
)
def test_promtool_accepts_the_configuration(command: list[str]) -> None:
    result = subprocess.run(
        [_promtool(), *command],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


@pytest.mark.parametrize(
    "path", ["grafana/dsop-hub.json", "prometheus/alerts.yml"], ids=["dashboard", "alerts"]
)
def test_only_exported_metrics_are_named(path: str) -> None:
    text = (DEPLOY / path).read_text()
    named = set(_NAME.findall(text))
    assert named, "no hub metric named"
    assert named <= _exported(), f"not exported: {sorted(named - _exported())}"


def test_the_dashboard_is_grafana_json_with_a_query_per_panel() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dsop-hub.json").read_text())
    assert dashboard["uid"] == "dsop-hub"
    assert dashboard["panels"] and all(panel["targets"] for panel in dashboard["panels"])
