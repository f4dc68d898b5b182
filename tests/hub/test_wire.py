"""The hub's wire helpers: fields written by hand encode as protobuf does, subset types keep
exactly their fields, views keep payloads as the bank's bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsop.controlinfo.v2 import bank_pb2, model_pb2
from hub import wire


@given(st.sampled_from(["accounts", "transactions", "roles"]), st.binary(max_size=40_000))
def test_frame_is_protobufs_encoding_of_a_bytes_field(name: str, payload: bytes) -> None:
    number = wire.BankResponseView.DESCRIPTOR.fields_by_name[name].number
    assert (
        wire.frame(number, payload) == wire.BankResponseView(**{name: payload}).SerializeToString()
    )


def test_frame_of_a_high_field_number_has_a_longer_tag() -> None:
    assert wire.frame(20, b"ab") == wire.varint(20 << 3 | 2) + b"\x02ab"


@given(st.integers(min_value=0, max_value=2**63))
def test_varints_read_back(value: int) -> None:
    field = wire.varint_field(bank_pb2.BankRequest.ID_FIELD_NUMBER, value)
    assert bank_pb2.BankRequest.FromString(field).id == value
    assert (field == b"") == (value == 0)


def _detail() -> model_pb2.AccountDetail:
    detail = model_pb2.AccountDetail(
        account_identifier="12345678903", account_reference="r1", currency="NOK", name="Lønn"
    )
    detail.servicer.identifier.value = "910000001"
    detail.servicer.name = "Fjordbanken"
    detail.balances.add(amount="10.00", type=model_pb2.BALANCE_TYPE_BOOKED_BALANCE)
    return detail


def test_a_subset_type_keeps_exactly_its_fields_and_drops_unknown_ones() -> None:
    subset = wire.subset_type(
        bank_pb2.ListAccountsWithBalancesResponse.DESCRIPTOR,
        {"accounts": {"servicer": {"identifier": None}, "balances": None, "currency": None}},
        "test_subset",
    )
    message = bank_pb2.ListAccountsWithBalancesResponse(accounts=[_detail(), _detail()])
    message.response_details.status = model_pb2.RESPONSE_STATUS_COMPLETE
    data = message.SerializeToString() + b"\xba\x3e\x01x"  # field 999: unknown to the contract
    kept = subset.FromString(data)
    kept.DiscardUnknownFields()
    expected = bank_pb2.ListAccountsWithBalancesResponse.FromString(message.SerializeToString())
    expected.ClearField("response_details")
    for account in expected.accounts:
        for name in ("account_identifier", "account_reference", "name"):
            account.ClearField(name)
        account.servicer.ClearField("name")
    assert kept.SerializeToString() == expected.SerializeToString()
    # Presence is kept: an optional field set to its default still leaves.
    empty = bank_pb2.ListAccountsWithBalancesResponse(
        accounts=[model_pb2.AccountDetail(currency="")]
    )
    assert subset.FromString(empty.SerializeToString()).accounts[0].HasField("currency")


def test_a_subset_type_names_a_field_the_contract_lacks() -> None:
    with pytest.raises(ValueError, match="no field nickname"):
        wire.subset_type(model_pb2.AccountDetail.DESCRIPTOR, {"nickname": None}, "bad")


def test_a_view_keeps_the_payload_as_the_banks_bytes_and_errors_typed() -> None:
    answer = bank_pb2.BankResponse(id=7, has_more=True)
    answer.accounts_with_balances.accounts.append(_detail())
    view = wire.view_of(answer)
    kind, payload = wire.payload(view)
    assert (view.id, view.has_more, kind) == (7, True, "accounts_with_balances")
    assert payload == answer.accounts_with_balances.SerializeToString()
    failed = wire.view_of(bank_pb2.BankResponse(id=8, error=model_pb2.Error(code="ACC-100")))
    assert wire.payload(failed) == ("error", b"")
    assert failed.error.code == "ACC-100"
    # Read in one message of many, as the hub's Exchange stream does.
    many = bank_pb2.ExchangeResponse(responses=[answer, answer])
    views = wire.ExchangeResponseView.FromString(many.SerializeToString())
    assert [wire.payload(v)[1] for v in views.responses] == [payload, payload]
