"""The bank registry: which banks exist and where their endpoints are.

A JSON file::

    {"banks": [{"id": "912345674", "name": "Fjordkysten Sparebank",
                "target": "127.0.0.1:50051", "protocol": "grpc"}, ...],
     "synthetic": {"seed": 1, "banks": 100}}

``id`` is the bank's organisation number (what KAR names), ``target`` a gRPC address.
``synthetic`` is written by the bank simulator (the seed and size of its dataset) so an embedded
KAR can answer consistently with the simulated banks; real deployments leave it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from hub.identifiers import is_valid_organisation_number

PROTOCOLS = frozenset({"grpc", "rest"})


class RegistryError(ValueError):
    """The registry file is malformed; the message names the entry and the problem."""


@dataclass(frozen=True, slots=True)
class BankEndpoint:
    bank_id: str
    name: str
    target: str
    protocol: str = "grpc"
    #: Hedge calls to this bank after its p95 latency times this factor (0: no hedging).
    hedge_factor: float | None = None


@dataclass(frozen=True, slots=True)
class SyntheticDatasetRef:
    seed: int
    banks: int


@dataclass(frozen=True, slots=True)
class Registry:
    banks: Mapping[str, BankEndpoint]
    synthetic: SyntheticDatasetRef | None = None

    @classmethod
    def load(cls, path: str | Path) -> Registry:
        try:
            raw = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise RegistryError(f"{path}: cannot read the registry: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: object, source: str = "registry") -> Registry:
        if not isinstance(raw, dict) or not isinstance(raw.get("banks"), list):
            raise RegistryError(f"{source}: expected an object with a 'banks' list")
        banks: dict[str, BankEndpoint] = {}
        for index, entry in enumerate(raw["banks"]):
            where = f"{source}: banks[{index}]"
            if not isinstance(entry, dict):
                raise RegistryError(f"{where}: expected an object")
            for key in ("id", "name", "target"):
                if not isinstance(entry.get(key), str) or not entry[key]:
                    raise RegistryError(f"{where}.{key}: required, a non-empty string")
            if not is_valid_organisation_number(entry["id"]):
                raise RegistryError(f"{where}.id: not a valid organisation number")
            if entry["id"] in banks:
                raise RegistryError(f"{where}.id: duplicate bank id")
            protocol = entry.get("protocol", "grpc")
            if protocol not in PROTOCOLS:
                raise RegistryError(f"{where}.protocol: must be one of {sorted(PROTOCOLS)}")
            hedge = entry.get("hedge_factor")
            if hedge is not None and (
                not isinstance(hedge, int | float) or isinstance(hedge, bool) or hedge < 0
            ):
                raise RegistryError(f"{where}.hedge_factor: must be a number >= 0")
            banks[entry["id"]] = BankEndpoint(
                entry["id"], entry["name"], entry["target"], protocol, hedge
            )
        synthetic = raw.get("synthetic")
        if synthetic is None:
            return cls(banks)
        if not (
            isinstance(synthetic, dict)
            and isinstance(synthetic.get("seed"), int)
            and isinstance(synthetic.get("banks"), int)
        ):
            raise RegistryError(f"{source}: synthetic must be {{'seed': int, 'banks': int}}")
        return cls(banks, SyntheticDatasetRef(synthetic["seed"], synthetic["banks"]))

    def to_dict(self) -> dict[str, object]:
        banks = []
        for b in self.banks.values():
            entry: dict[str, object] = {
                "id": b.bank_id,
                "name": b.name,
                "target": b.target,
                "protocol": b.protocol,
            }
            if b.hedge_factor is not None:
                entry["hedge_factor"] = b.hedge_factor
            banks.append(entry)
        out: dict[str, object] = {"banks": banks}
        if self.synthetic is not None:
            out["synthetic"] = {"seed": self.synthetic.seed, "banks": self.synthetic.banks}
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2))
