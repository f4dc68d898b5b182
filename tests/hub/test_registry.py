from __future__ import annotations

import re
from pathlib import Path

import pytest

from hub.registry import Registry, RegistryError, SyntheticDatasetRef

GOOD = {"id": "974761076", "name": "Bank", "target": "127.0.0.1:1"}


def test_round_trip(tmp_path: Path) -> None:
    registry = Registry.from_dict({"banks": [GOOD], "synthetic": {"seed": 3, "banks": 1}})
    path = tmp_path / "r.json"
    registry.save(path)
    loaded = Registry.load(path)
    assert loaded == registry
    assert loaded.synthetic == SyntheticDatasetRef(3, 1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "'banks' list"),
        ({"banks": [1]}, "banks[0]: expected an object"),
        ({"banks": [{**GOOD, "id": "974761077"}]}, "banks[0].id: not a valid organisation"),
        ({"banks": [{**GOOD, "target": ""}]}, "banks[0].target: required"),
        ({"banks": [GOOD, GOOD]}, "banks[1].id: duplicate"),
        ({"banks": [{**GOOD, "protocol": "soap"}]}, "banks[0].protocol"),
        ({"banks": [GOOD], "synthetic": {"seed": "x"}}, "synthetic must be"),
    ],
)
def test_malformed_registry_is_refused_naming_the_entry(raw: object, message: str) -> None:
    with pytest.raises(RegistryError, match=re.escape(message)):
        Registry.from_dict(raw)


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"missing\.json"):
        Registry.load(tmp_path / "missing.json")
