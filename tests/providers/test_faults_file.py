"""The faults file: per-bank faults over a default, and errors naming the file, table and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.base import BankProvider
from providers.faults import Faults, FaultyBank, load_faults_file

BANKS = ("974761076", "912345674", "983163327")


def _load(tmp_path: Path, text: str) -> dict[str, Faults]:
    path = tmp_path / "faults.toml"
    path.write_text(text, encoding="utf-8")
    return load_faults_file(path, BANKS)


def test_a_bank_table_overrides_the_default_key_by_key(tmp_path: Path) -> None:
    faults = _load(
        tmp_path,
        """
        [default]
        latency = 0.01
        error_rate = 0.5

        [974761076]
        error_rate = 0.0
        error_code = "ACC-022"

        [912345674]
        down = true
        """,
    )
    assert faults["974761076"] == Faults(latency=0.01, error_rate=0.0, error_code="ACC-022")
    assert faults["912345674"] == Faults(latency=0.01, error_rate=0.5, down=True)
    assert faults["983163327"] == Faults(latency=0.01, error_rate=0.5)


def test_an_empty_file_means_no_faults(tmp_path: Path) -> None:
    assert _load(tmp_path, "") == dict.fromkeys(BANKS, Faults())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[974761076]\nslowness = 1", "[974761076].slowness: unknown fault"),
        ('[974761076]\ntail_rate = "often"', "[974761076].tail_rate: expected a number"),
        ("[974761076]\ntail_rate = 1.5", "[974761076].tail_rate: is a share of requests, 0 to 1"),
        ("[default]\nlatency = -1.0", "[default].latency: must be a finite number >= 0"),
        ("[default]\nlatency = nan", "[default].latency: must be a finite number >= 0"),
        ("[912345674]\ndown = 1", "[912345674].down: expected true or false"),
        ("[912345674]\nhang = true\ncrash_after_pages = -2", "crash_after_pages: must be -1"),
        ("[912345674]\noversized_bytes = 1.5", "oversized_bytes: expected a whole number"),
        ('[912345674]\nerror_code = "ACC-999"', "[912345674].error_code: unknown ACC code"),
        ("[123456785]\ndown = true", "[123456785]: no such bank"),
        ("latency = 0.5", "latency: not a table"),
        ("[974761076\ndown = true", "not TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_file_table_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=r"faults\.toml") as raised:
        _load(tmp_path, text)
    assert message in str(raised.value)


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"nowhere\.toml: cannot read"):
        load_faults_file(tmp_path / "nowhere.toml", BANKS)


def test_a_faulty_bank_answers_concurrently_only_while_its_answers_wait() -> None:
    bank = FaultyBank(BankProvider(), Faults(error_rate=0.5))
    assert not bank.concurrent  # in order, as its inner provider: nothing waits
    bank.set(tail_rate=0.1, tail_latency=2.0)
    assert bank.concurrent
    bank.set(tail_rate=0.0, hang=True)
    assert bank.concurrent
