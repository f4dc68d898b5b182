"""Accounts with balances: how an accounts list and the details of its accounts compose into
one answer (``ListAccountsWithBalancesResponse``, the enforcement balance query).

Shared by the bank kit, which answers the one-request form on ``Exchange`` itself, and by the
hub, which composes the same answer from separate accounts and details answers for a bank that
does not offer it (the REST bridge, a bank with its own ``Exchange``). Both must give the
agency the same bytes, so the rules live here once:

- the accounts appear in the list's order, each as its details;
- an account the bank does not deliver digitally (accountReference ``dataNotDelivered``)
  appears as a detail without balances, and makes the answer partial;
- the answer is partial when the list or any account's details were.
"""

from __future__ import annotations

from typing import Final

from dsop.controlinfo.v2 import bank_pb2, model_pb2

#: The standard's sentinel reference: the bank holds data it did not deliver digitally.
DATA_NOT_DELIVERED: Final = "dataNotDelivered"
PARTIAL: Final = model_pb2.RESPONSE_STATUS_PARTIAL
COMPLETE: Final = model_pb2.RESPONSE_STATUS_COMPLETE


def detail_without_balances(account: model_pb2.Account) -> model_pb2.AccountDetail:
    """An account the bank did not deliver digitally, as a detail without balances."""
    detail = model_pb2.AccountDetail(
        status=account.status,
        account_identifier=account.account_identifier,
        account_reference=account.account_reference,
        type=account.type,
    )
    if account.HasField("servicer"):
        detail.servicer.CopyFrom(account.servicer)
    if account.HasField("currency"):
        detail.currency = account.currency
    if account.HasField("name"):
        detail.name = account.name
    if account.HasField("primary_owner"):
        detail.primary_owner.CopyFrom(account.primary_owner)
    return detail


class BalancesAnswer:
    """Collects the details of a listing's accounts, in any order, into one answer.

    ``wanted`` lists (index, accountReference) of the accounts whose details must be asked
    for; give each answer to :meth:`add` with its index, then take :meth:`answer`.
    """

    __slots__ = ("_details", "_envelope", "partial", "wanted")

    def __init__(self, listing: bank_pb2.ListAccountsResponse) -> None:
        self._envelope = listing.response_details
        self.partial = listing.response_details.status == PARTIAL
        self._details: list[model_pb2.AccountDetail | None] = [None] * len(listing.accounts)
        self.wanted: list[tuple[int, str]] = []
        for index, account in enumerate(listing.accounts):
            reference = account.account_reference
            if reference == DATA_NOT_DELIVERED:
                self._details[index] = detail_without_balances(account)
                self.partial = True
            else:
                self.wanted.append((index, reference))

    def add(self, index: int, details: bank_pb2.GetAccountDetailsResponse) -> None:
        self.partial |= details.response_details.status == PARTIAL
        self._details[index] = details.account

    def answer(self) -> bank_pb2.ListAccountsWithBalancesResponse:
        answer = bank_pb2.ListAccountsWithBalancesResponse()
        # The list's envelope (its message, if any), with the status of the whole.
        answer.response_details.CopyFrom(self._envelope)
        answer.response_details.status = PARTIAL if self.partial else COMPLETE
        accounts = answer.accounts
        for detail in self._details:
            if detail is not None:
                accounts.append(detail)
        return answer
