"""The bank under test, as the suite sees it: the five APIs one call at a time, the batched
path (gRPC ``Exchange``; for REST, many calls at once through the bridge), and a call with a
short deadline. :class:`GrpcTarget` speaks ``BankService``; :class:`RestTarget` speaks the
REST API v2 through :class:`hub.rest.RestBankClient`, exactly as the hub would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dsop.controlinfo.v2 import bank_pb2, bank_pb2_grpc
from hub.rest import RestBankClient
from hub.wire import PAYLOAD_TYPES
from providers.errors import status_from_code

#: The oneof names of BankRequest/BankResponse, one per API.
KINDS = ("accounts", "account_details", "transactions", "cards", "roles")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class CallError(Exception):
    """A call that ended in an error: its gRPC status and the standard's ACC code (the
    ErrorInfo reason or the Error's code; empty when the bank gave none)."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str) -> None:
        super().__init__(f"{status.name} {code or '(no ACC code)'}: {message}")
        self.status = status
        self.code = code
        self.message = message


#: A call's answer: the response (for transactions: the list of pages) or its error.
Answer = Message | list[Message] | CallError


@dataclass(frozen=True, slots=True)
class Request:
    kind: str
    body: Message


class Target(Protocol):
    description: str

    async def call(self, request: Request) -> Message | list[Message]:
        """One API call; raises CallError."""
        ...

    async def batch(self, requests: Sequence[Request]) -> list[Answer]:
        """All requests on the batched path at once, answers in request order."""
        ...

    async def call_with_deadline(self, request: Request, seconds: float) -> Answer:
        """One call given ``seconds`` to finish (the caller guards against a hang)."""
        ...

    async def close(self) -> None: ...


def _from_rpc_error(exc: grpc.aio.AioRpcError) -> CallError:
    code = ""
    status = rpc_status.from_call(exc)
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                code = info.reason
                break
    return CallError(exc.code(), code, exc.details() or "")


class GrpcTarget:
    """A bank serving ``dsop.controlinfo.v2.BankService``."""

    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None = None) -> None:
        options = (
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        )
        self.description = f"gRPC {target}"
        self._channel = (
            grpc.aio.secure_channel(target, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(target, options=options)
        )
        self._stub = bank_pb2_grpc.BankServiceStub(self._channel)

    async def _call(self, request: Request, timeout: float | None) -> Message | list[Message]:
        stub = self._stub
        body: Any = request.body
        try:
            if request.kind == "transactions":
                return [page async for page in stub.ListTransactions(body, timeout=timeout)]
            method: Any = {
                "accounts": stub.ListAccounts,
                "account_details": stub.GetAccountDetails,
                "cards": stub.ListCards,
                "roles": stub.ListRoles,
            }[request.kind]
            response: Message = await method(body, timeout=timeout)
            return response
        except grpc.aio.AioRpcError as exc:
            raise _from_rpc_error(exc) from None

    async def call(self, request: Request) -> Message | list[Message]:
        return await self._call(request, 60.0)

    async def call_with_deadline(self, request: Request, seconds: float) -> Answer:
        try:
            return await self._call(request, seconds)
        except CallError as exc:
            return exc

    async def batch(self, requests: Sequence[Request]) -> list[Answer]:
        message = bank_pb2.ExchangeRequest()
        for index, request in enumerate(requests, 1):
            getattr(message.requests.add(id=index), request.kind).CopyFrom(request.body)
        pages: dict[int, list[Message]] = {i: [] for i in range(1, len(requests) + 1)}
        answers: dict[int, Answer] = {}
        call = self._stub.Exchange(timeout=120.0)
        try:
            await call.write(message)
            async for reply in call:
                for response in reply.responses:
                    if response.id not in pages or response.id in answers:
                        continue  # an id never sent, or already ended: ignored like the hub
                    kind = response.WhichOneof("result")
                    if kind == "error":
                        answers[response.id] = CallError(
                            status_from_code(response.error.status),
                            response.error.code,
                            response.error.message,
                        )
                    elif kind is not None:
                        pages[response.id].append(getattr(response, kind))
                    if not response.has_more and response.id not in answers:
                        answers[response.id] = pages[response.id]
                if len(answers) == len(requests):
                    break
            await call.done_writing()
        except grpc.aio.AioRpcError as exc:
            error = _from_rpc_error(exc)
            return [answers.get(i, error) for i in range(1, len(requests) + 1)]
        finally:
            call.cancel()
        missing = CallError(grpc.StatusCode.UNKNOWN, "", "the Exchange stream ended unanswered")
        out: list[Answer] = []
        for index, request in enumerate(requests, 1):
            answer = answers.get(index, missing)
            if isinstance(answer, list) and request.kind != "transactions":
                answer = (
                    answer[0]
                    if len(answer) == 1
                    else CallError(
                        grpc.StatusCode.UNKNOWN, "", f"{len(answer)} answers to one request"
                    )
                )
            out.append(answer)
        return out

    async def close(self) -> None:
        await self._channel.close()


class RestTarget:
    """A bank serving the REST API v2, reached through the hub's REST bridge."""

    def __init__(self, client: RestBankClient) -> None:
        self.description = f"REST {client.base_url} (through the hub's REST bridge)"
        self._client = client

    def _start(self, request: Request, timeout_ms: int = 0) -> asyncio.Future[Answer]:
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        pages: list[Message] = []
        kind = request.kind

        def on_response(response: Any) -> None:
            if done.done():
                return
            if response.HasField("error"):
                error = response.error
                done.set_result(
                    CallError(status_from_code(error.status), error.code, error.message)
                )
                return
            result = response.WhichOneof("result")
            if result is not None:
                # The bridge answers as the hub reads banks: payloads as the bytes received.
                pages.append(PAYLOAD_TYPES[result].FromString(getattr(response, result)))
            if not response.has_more:
                if kind == "transactions":
                    done.set_result(pages)
                elif len(pages) == 1:
                    done.set_result(pages[0])
                else:
                    done.set_result(
                        CallError(grpc.StatusCode.UNKNOWN, "", f"{len(pages)} answers to one call")
                    )

        sent = self._client.request(on_response)
        getattr(sent, kind).CopyFrom(request.body)
        sent.timeout_ms = timeout_ms
        return done

    async def call(self, request: Request) -> Message | list[Message]:
        answer = await self._start(request)
        if isinstance(answer, CallError):
            raise answer
        return answer

    async def call_with_deadline(self, request: Request, seconds: float) -> Answer:
        return await self._start(request, max(1, int(seconds * 1000)))

    async def batch(self, requests: Sequence[Request]) -> list[Answer]:
        futures = [self._start(request) for request in requests]
        return list(await asyncio.gather(*futures))

    async def close(self) -> None:
        await self._client.close()
