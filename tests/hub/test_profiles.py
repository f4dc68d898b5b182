from __future__ import annotations

from pathlib import Path

import pytest

from dsop.hub.v1 import hub_pb2
from hub.profiles import PeriodKind, ProfileError, load_profiles

GOOD = """
[services.test]
consumers = ["974761076"]
scopes = ["s"]
mandates = ["m"]
operations = ["accounts"]
owner = "any"
period = { kind = "years-back", years = 3 }
fields = "skatt"
"""


def test_shipped_profiles_cover_every_service() -> None:
    profiles = load_profiles()
    assert set(profiles.services) == {
        "skatt-kontroll",
        "politi-utlevering",
        "nav-kontroll",
        "konkursbehandling",
        "oppgjor-etter-dodsfall",
        "vergekontroll",
        "fi-utlegg",
    }
    utlegg = profiles.services["fi-utlegg"]
    assert utlegg.period.kind is PeriodKind.TODAY
    assert utlegg.primary_only
    assert hub_pb2.OPERATION_CARDS not in utlegg.operations
    assert profiles.services["konkursbehandling"].period.amount == 12


def test_an_override_file_replaces_the_shipped_profiles(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(GOOD)
    assert list(load_profiles(path).services) == ["test"]


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (('owner = "any"', 'owner = "some"'), 7, "services.test.owner: must be 'any' or"),
        (('operations = ["accounts"]', 'operations = ["x"]'), 6, "unknown operation 'x'"),
        (('fields = "skatt"', 'fields = "nope"'), 9, "unknown column 'nope'"),
        (('consumers = ["974761076"]', 'consumers = ["1"]'), 3, "9-digit organisation number"),
        (("years = 3", "years = 0"), 8, "years = a positive whole number"),
        (('scopes = ["s"]', 'scopes = ["s"]\ncolour = "blue"'), 2, "colour: unknown key"),
        (('mandates = ["m"]', ""), 2, "mandates: required"),
        (
            ('operations = ["accounts"]', 'operations = ["accounts-with-balances"]'),
            6,
            "needs accounts and account-details",
        ),
        (("[services.test]", "[services.test"), 0, "profiles"),
    ],
)
def test_a_malformed_profile_is_refused_naming_line_and_problem(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(GOOD.replace(*change))
    with pytest.raises(ProfileError) as caught:
        load_profiles(path)
    text = str(caught.value)
    assert message in text
    if line:
        assert f"profiles.toml:{line}:" in text


def test_a_malformed_field_table_names_the_line(tmp_path: Path) -> None:
    tsv = tmp_path / "f.tsv"
    tsv.write_text("endpoint\tfield\tskatt\nAccounts\taccounts.name\tZ\n")
    with pytest.raises(ProfileError, match=r"f\.tsv:2: skatt: unknown category 'Z'"):
        load_profiles(fields_path=tsv)
