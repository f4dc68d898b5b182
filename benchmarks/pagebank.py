"""A bank for the ``transactions`` scenario: one synthetic bank whose transaction pages are
generated once and replayed, so the bank is not what bounds the measure.

The synthetic generator makes about 90,000 transactions a second (one core), under half the
scenario's target; the page bank generates the first ``--cycle`` pages of the account for real
(1,000 transactions each, from the synthetic dataset) and answers a transactions request for
that account with ``--transactions`` transactions, cycling through them. Everything else is
the synthetic bank's. Run as a child process (``python -m benchmarks.pagebank``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import uvloop

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from hub.registry import BankEndpoint, Registry, SyntheticDatasetRef
from providers.server import ServerTls, start_bank
from providers.simulator import SyntheticBank, synthetic_banks
from providers.synthetic.dataset import SyntheticDataset
from providers.synthetic.universe import make_banks

log = logging.getLogger(__name__)
PAGE: int = 1000


class PageBank(SyntheticBank):
    """Replays ``pages`` for the account ``reference``, ``total`` transactions in all."""

    def __init__(
        self,
        inner: SyntheticBank,
        reference: str,
        pages: list[bank_pb2.ListTransactionsResponse],
        total: int,
    ) -> None:
        super().__init__(inner.data, inner.bank_id, inner.rules)
        self.reference = reference
        self.pages = pages
        self.total = total

    async def list_transactions(
        self, request: bank_pb2.ListTransactionsRequest
    ) -> AsyncIterator[bank_pb2.ListTransactionsResponse]:
        if request.account_reference != self.reference:
            async for page in super().list_transactions(request):
                yield page
            return
        self.check("transactions", request.context)
        left = self.total
        for page in itertools.cycle(self.pages):
            if left <= 0:
                return
            if left < len(page.transactions):
                last = bank_pb2.ListTransactionsResponse(response_details=page.response_details)
                last.transactions.extend(page.transactions[:left])
                yield last
                return
            left -= len(page.transactions)
            yield page


def real_pages(
    dataset: SyntheticDataset, bank_id: str, reference: str, since: dt.date, count: int
) -> list[bank_pb2.ListTransactionsResponse]:
    """The first ``count`` full pages of the account from ``since``."""
    pages: list[bank_pb2.ListTransactionsResponse] = []
    today = dataset.now().date()
    for transactions in dataset.bank(bank_id).iter_transactions(reference, since, today, PAGE):
        if len(transactions) < PAGE or len(pages) == count:
            break
        page = bank_pb2.ListTransactionsResponse()
        page.response_details.status = model_pb2.RESPONSE_STATUS_COMPLETE
        page.transactions.extend(transactions)
        pages.append(page)
    return pages


async def serve(args: argparse.Namespace) -> None:
    infos = make_banks(args.banks, args.seed)
    dataset = SyntheticDataset(args.seed, infos)
    info = next(i for i in infos if i.bank_id == args.bank_id)
    (inner,) = synthetic_banks(dataset, [info])
    since = dt.date.fromisoformat(args.since)
    pages = real_pages(dataset, info.bank_id, args.account, since, args.cycle)
    provider = PageBank(inner, args.account, pages, args.transactions)
    tls = None
    if args.certs is not None:
        certs: Path = args.certs
        tls = ServerTls(
            (certs / "bank.pem").read_bytes(),
            (certs / "bank.key").read_bytes(),
            (certs / "ca.pem").read_bytes(),
        )
    hosted = await start_bank(provider, "127.0.0.1", 0, tls)
    registry = Registry(
        {info.bank_id: BankEndpoint(info.bank_id, info.name, f"localhost:{hosted.port}")},
        SyntheticDatasetRef(args.seed, args.banks),
    )
    tmp = args.registry_out.with_suffix(".tmp")
    registry.save(tmp)
    tmp.replace(args.registry_out)
    log.info("page bank %s on %d: %d pages cycled", info.bank_id, hosted.port, len(pages))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await hosted.server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pagebank", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--banks", type=int, required=True, help="banks of the dataset")
    parser.add_argument("--bank-id", required=True, help="the bank to host")
    parser.add_argument("--account", required=True, help="the account reference to replay")
    parser.add_argument("--since", required=True, help="first day of the real pages")
    parser.add_argument("--transactions", type=int, required=True)
    parser.add_argument("--cycle", type=int, default=50, help="real pages generated")
    parser.add_argument("--registry-out", type=Path, required=True)
    parser.add_argument("--certs", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    uvloop.run(serve(args))


if __name__ == "__main__":
    main()
