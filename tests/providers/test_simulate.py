"""`dsop bank simulate --faults`: a real simulator process, its faults changed at run time by
editing the file and sending SIGHUP, seen through real gRPC calls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from benchmarks.processes import ROOT, free_port_block
from clients.services import MANDATES
from dsop.controlinfo.v2 import bank_pb2, bank_pb2_grpc
from providers.synthetic.universe import make_banks

BANKS = 3
SEED = 5
IDS = [info.bank_id for info in make_banks(BANKS, SEED)]
PARTY = "11878243848"


class Simulator:
    def __init__(self, process: subprocess.Popen[str], base_port: int, faults: Path) -> None:
        self.process = process
        self.base_port = base_port
        self.faults = faults

    def reload(self, text: str) -> None:
        self.faults.write_text(text, encoding="utf-8")
        os.kill(self.process.pid, signal.SIGHUP)

    def call(self, index: int) -> grpc.StatusCode:
        """Asks bank ``index`` (on a new connection) for a party's accounts; the status."""
        with grpc.insecure_channel(f"127.0.0.1:{self.base_port + index}") as channel:
            stub = bank_pb2_grpc.BankServiceStub(channel)
            request = bank_pb2.ListAccountsRequest(
                context=bank_pb2.RequestContext(
                    account_info_request_id="6b4f1bd4-7c38-4f0e-9a53-0d6d7d3e1c11",
                    correlation_id="0c9b0a57-4f8e-4bbf-8d70-8e9b1b3b8a7e",
                    legal_mandate=MANDATES["fi-utlegg"],
                ),
                party_id=PARTY,
                only_primary_owner=True,
            )
            try:
                stub.ListAccounts(request, timeout=5)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    # The bank's own refusal carries the standard's code.
                    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
                    assert status is not None
                    info = error_details_pb2.ErrorInfo()
                    status.details[0].Unpack(info)
                    assert info.reason == "ACC-022"
                return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


def _until(check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"not within {limit} s: {what}"
        time.sleep(0.1)


def _start(tmp_path: Path, faults: str, processes: int) -> tuple[subprocess.Popen[str], int]:
    (tmp_path / "faults.toml").write_text(faults, encoding="utf-8")
    base = free_port_block(BANKS)
    with (tmp_path / "simulator.log").open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "clients", "bank", "simulate",
                "--banks", str(BANKS), "--seed", str(SEED), "--base-port", str(base),
                "--processes", str(processes), "--registry-out", str(tmp_path / "registry.json"),
                "--faults", str(tmp_path / "faults.toml"), "--insecure",
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            start_new_session=True,
        )  # fmt: skip
    return process, base


@pytest.fixture
def simulator(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Simulator]:
    """Bank 0 healthy, bank 1 refusing every request with ACC-022, bank 2 down; in one
    process, or as many as the test's parameter says (with two, banks 0 and 2 live in one,
    bank 1 in the other)."""
    process, base = _start(
        tmp_path,
        f'[{IDS[1]}]\nerror_rate = 1.0\nerror_code = "ACC-022"\n[{IDS[2]}]\ndown = true\n',
        getattr(request, "param", 1),
    )
    try:
        _until((tmp_path / "registry.json").exists, "the simulator is ready", 30)
        yield Simulator(process, base, tmp_path / "faults.toml")
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_faults_apply_from_the_start(simulator: Simulator, tmp_path: Path) -> None:
    assert simulator.call(0) == grpc.StatusCode.OK
    assert simulator.call(1) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert simulator.call(2) == grpc.StatusCode.UNAVAILABLE  # connection refused
    log = (tmp_path / "simulator.log").read_text()
    assert f"bank {IDS[1]}: faults error_rate=1.0, error_code='ACC-022'" in log
    assert f"bank {IDS[2]}: faults down=True" in log


@pytest.mark.parametrize("simulator", [1, 2], ids=["one-process", "two-processes"], indirect=True)
def test_sighup_brings_banks_down_and_up_on_their_ports_and_errors_off_and_on(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.reload(f"[{IDS[0]}]\ndown = true\n")
    _until(lambda: simulator.call(0) == grpc.StatusCode.UNAVAILABLE, "bank 0 down")
    _until(lambda: simulator.call(1) == grpc.StatusCode.OK, "bank 1 without errors")
    _until(lambda: simulator.call(2) == grpc.StatusCode.OK, "bank 2 up on its old port")

    simulator.reload(f'[{IDS[1]}]\nerror_rate = 1.0\nerror_code = "ACC-022"\n')
    _until(lambda: simulator.call(0) == grpc.StatusCode.OK, "bank 0 up again on its old port")
    _until(lambda: simulator.call(1) == grpc.StatusCode.RESOURCE_EXHAUSTED, "bank 1 erring")

    log = (tmp_path / "simulator.log").read_text()
    assert f"bank {IDS[0]}: down (port {simulator.base_port} closed)" in log
    assert f"bank {IDS[0]}: up again on port {simulator.base_port}" in log
    assert PARTY not in log  # no personal data


def test_a_bad_file_on_sighup_is_logged_and_the_faults_in_force_stay(
    simulator: Simulator, tmp_path: Path
) -> None:
    # Were it applied, bank 0 would go down and bank 2 come up.
    simulator.reload(f"[{IDS[0]}]\ndown = true\nslowness = 2\n")
    log = tmp_path / "simulator.log"
    _until(lambda: "slowness" in log.read_text(), "the error logged")
    assert f"faults.toml: [{IDS[0]}].slowness: unknown fault" in log.read_text()
    time.sleep(0.5)
    assert simulator.call(0) == grpc.StatusCode.OK
    assert simulator.call(1) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert simulator.call(2) == grpc.StatusCode.UNAVAILABLE


def test_a_bad_file_stops_the_simulator_at_start(tmp_path: Path) -> None:
    process, _ = _start(tmp_path, f"[{IDS[1]}]\nerror_rate = 2.0\n", 1)
    assert process.wait(timeout=30) == 2
    log = (tmp_path / "simulator.log").read_text()
    assert f"faults.toml: [{IDS[1]}].error_rate: is a share of requests" in log
    assert not (tmp_path / "registry.json").exists()
