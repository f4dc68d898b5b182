"""The standard's error vocabulary (DSOP.md §5) and its mapping to gRPC, in one place.

A bank refuses or fails a request by raising :class:`BankError` with the standard's ACC code.
The servicers turn it into a gRPC status (per-API RPCs, with a ``google.rpc.ErrorInfo`` whose
``reason`` is the ACC code) or into an ``Error`` answer (the batched Exchange RPC).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from dsop.controlinfo.v2 import model_pb2

#: The ErrorInfo domain of errors raised by banks and the hub.
ERROR_DOMAIN: Final = "dsop.no"

#: ACC code -> gRPC status (DSOP.md §5).
ACC_STATUS: Final[Mapping[str, grpc.StatusCode]] = MappingProxyType(
    {
        "ACC-001": grpc.StatusCode.INVALID_ARGUMENT,
        "ACC-002": grpc.StatusCode.NOT_FOUND,
        "ACC-003": grpc.StatusCode.NOT_FOUND,
        "ACC-010": grpc.StatusCode.UNAUTHENTICATED,
        "ACC-011": grpc.StatusCode.PERMISSION_DENIED,
        "ACC-012": grpc.StatusCode.UNIMPLEMENTED,
        "ACC-013": grpc.StatusCode.INVALID_ARGUMENT,
        "ACC-022": grpc.StatusCode.RESOURCE_EXHAUSTED,
        "ACC-100": grpc.StatusCode.UNAVAILABLE,
        "ACC-500": grpc.StatusCode.INTERNAL,
    }
)

#: gRPC status -> the ACC code reported when a call fails without one (transport failures).
STATUS_ACC: Final[Mapping[grpc.StatusCode, str]] = MappingProxyType(
    {
        grpc.StatusCode.INVALID_ARGUMENT: "ACC-001",
        grpc.StatusCode.NOT_FOUND: "ACC-002",
        grpc.StatusCode.UNAUTHENTICATED: "ACC-010",
        grpc.StatusCode.PERMISSION_DENIED: "ACC-011",
        grpc.StatusCode.UNIMPLEMENTED: "ACC-012",
        grpc.StatusCode.RESOURCE_EXHAUSTED: "ACC-022",
        grpc.StatusCode.UNAVAILABLE: "ACC-100",
        grpc.StatusCode.DEADLINE_EXCEEDED: "ACC-100",
        grpc.StatusCode.CANCELLED: "ACC-100",
    }
)


class BankError(Exception):
    """A refusal or failure carrying the standard's ACC code.

    The message is sent to the caller: it must not contain personal data (no party
    identifiers or account numbers), since operators see it in the hub's summaries.
    """

    def __init__(self, code: str, message: str) -> None:
        if code not in ACC_STATUS:
            raise ValueError(f"unknown ACC code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> grpc.StatusCode:
        return ACC_STATUS[self.code]

    def to_proto(self) -> model_pb2.Error:
        return model_pb2.Error(status=self.status.value[0], code=self.code, message=self.message)

    def to_rpc_status(self) -> status_pb2.Status:
        """The rich status: code, message and an ErrorInfo whose reason is the ACC code."""
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=self.code, domain=ERROR_DOMAIN))
        return status_pb2.Status(code=self.status.value[0], message=self.message, details=[detail])


def status_from_code(value: int) -> grpc.StatusCode:
    """The grpc.StatusCode whose numeric value is ``value`` (UNKNOWN when none is)."""
    return _STATUS_BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


_STATUS_BY_VALUE: Final = {code.value[0]: code for code in grpc.StatusCode}
