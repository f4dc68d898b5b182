"""The metrics endpoint after a batch: every family has samples, and neither the metrics nor
the logs carry a party, an account number or a name."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from dsop.hub.v1 import hub_pb2
from hub.logs import QUERY_LOG, JsonFormatter
from hub.resilience import CallPolicy
from providers.base import BankProvider
from providers.faults import Faults, FaultyBank
from tests.support import EnvFactory, balance_query

FAMILIES = (
    # queries by service, operation and outcome
    "dsop_hub_queries",
    "dsop_hub_query_duration_seconds",
    "dsop_hub_refusals",
    # per-bank call latency and outcomes
    "dsop_hub_bank_call_duration_seconds",
    "dsop_hub_bank_calls",
    # in flight
    "dsop_hub_queries_in_flight",
    "dsop_hub_streams_open",
    "dsop_hub_bank_requests_in_flight",
    # resilience
    "dsop_hub_bank_circuit_state",
    "dsop_hub_bank_retries",
    "dsop_hub_bank_hedges",
    "dsop_hub_queries_shed",
    # audit
    "dsop_hub_audit_commit_duration_seconds",
    "dsop_hub_audit_batch_records",
    "dsop_hub_audit_records",
    # coalescing
    "dsop_hub_bank_batch_requests",
)


def _scrape(port: int) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    } | {"_text": [("", {"text": text}, 0.0)]}


async def test_every_family_has_samples_and_no_personal_data_leaks(
    make_env: EnvFactory,
) -> None:
    faulty: list[str] = []

    def wrap(provider: BankProvider) -> BankProvider:
        if not faulty:  # the first bank fails half its calls: retries, failures
            faulty.append(provider.bank_id)
            return FaultyBank(provider, Faults(error_rate=0.5, error_code="ACC-100"))
        return provider

    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    QUERY_LOG.configure(enabled=True, fmt="json", stream=captured)
    try:
        env = await make_env(
            wrap,
            metrics_listen="127.0.0.1:0",
            calls=CallPolicy(timeout=5.0, max_retries=2, backoff_base=0.001, retry_ratio=1.0),
        )
        parties = env.dataset.party_sample(60)
        queries = [balance_query(party) for party in parties]
        # One refused query: a party id that breaks the check digits, as a typo would.
        bad = parties[0][:-1] + str((int(parties[0][-1]) + 1) % 10)
        queries.append(balance_query(bad, hub_pb2.OPERATION_ACCOUNTS))
        accounts: set[str] = set()
        async with env.client() as hub:
            async for event in hub.stream(queries, batch_size=20):
                if event.HasField("result"):
                    for account in event.result.accounts_with_balances.accounts:
                        accounts.add(account.account_identifier)
        assert accounts, "the batch found accounts"
        port = env.hub.metrics_port
        assert port is not None
        scraped = await asyncio.to_thread(_scrape, port)
    finally:
        QUERY_LOG.flush()
        QUERY_LOG.configure(enabled=False, fmt="json", stream=sys.stderr)
        root.removeHandler(handler)
        root.setLevel(old_level)

    for name in FAMILIES:
        assert scraped.get(name), f"{name}: no samples"

    def value(family: str, sample: str, **labels: str) -> float:
        return sum(
            v
            for n, got, v in scraped[family]
            if n == sample and all(got.get(k) == want for k, want in labels.items())
        )

    answered = value(
        "dsop_hub_queries",
        "dsop_hub_queries_total",
        service="fi-utlegg",
        operation="accounts-with-balances",
    )
    assert answered >= len(parties)
    assert value("dsop_hub_queries", "dsop_hub_queries_total", outcome="refused") >= 1
    assert value("dsop_hub_refusals", "dsop_hub_refusals_total", code="ACC-001") >= 1
    assert value("dsop_hub_bank_retries", "dsop_hub_bank_retries_total", bank=faulty[0]) > 0
    assert (
        value("dsop_hub_bank_circuit_state", "dsop_hub_bank_circuit_state", bank=faulty[0]) == 1
    )  # exactly one state is current
    assert value("dsop_hub_audit_records", "dsop_hub_audit_records_total") > 0
    assert value("dsop_hub_bank_batch_requests", "dsop_hub_bank_batch_requests_count") > 0
    assert value("dsop_hub_bank_calls", "dsop_hub_bank_calls_total", outcome="answered") > 0

    # The no-personal-data scan: every party asked about, every account number delivered and
    # every holder name, against everything the hub emitted to operators.
    logged = captured.getvalue()
    assert '"msg":"query"' in logged  # the per-query lines are there to scan
    emitted = scraped["_text"][0][1]["text"] + logged
    today = dt.date.today()
    names = {
        account.primary_owner.name
        for party in parties
        for info in env.infos
        for account in env.dataset.bank(info.bank_id)
        .list_accounts(party, True, today, today)
        .accounts
        if account.primary_owner.name
    }
    assert names
    for secret in {*parties, bad, *accounts, *names}:
        assert secret not in emitted, "personal data in metrics or logs"
