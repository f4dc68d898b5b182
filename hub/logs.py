"""Structured logs: one JSON object per line on stderr (or plain text for people).

A record's ``fields`` (passed as ``extra={"fields": {...}}``) become keys of its object, so a
line carries ids and figures as data a log pipeline can index, not text to parse.

The per-query lines (an access log) do not go through :mod:`logging`: at thousands of queries
a second its per-record cost (about 25 µs with the JSON formatter, measured here) would be a
noticeable share of the hub's CPU. :data:`QUERY_LOG` gathers the lines of one turn of the event
loop and writes them at once, in the same format and to the same stream as the other logs.
Nothing here adds personal data; callers never pass any (see hub/observe.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, Final, TextIO

import orjson

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., <fields>, "exc": ...}``."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        #: Keys every line carries (the worker's number, say).
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.static,
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def _timestamp(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + (
        f".{int((created - seconds) * 1000):03d}Z"
    )


class TextFormatter(logging.Formatter):
    """The classic line, with a record's fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


class QueryLog:
    """One line per finished query, written once per loop turn; off until configured."""

    def __init__(self) -> None:
        self.enabled = False
        self.json = True
        self.stream: TextIO | None = None
        self.static: dict[str, Any] = {}
        self._pending: list[dict[str, Any]] = []
        self._scheduled = False

    def configure(
        self, *, enabled: bool, fmt: str, stream: TextIO, static: dict[str, Any] | None = None
    ) -> None:
        self.flush()
        self.enabled = enabled
        self.json = fmt == "json"
        self.stream = stream
        self.static = static or {}

    def add(self, fields: dict[str, Any]) -> None:
        self._pending.append(fields)
        if not self._scheduled:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a script): write at once
                self.flush()

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        if not pending or self.stream is None:
            return
        stamp = _timestamp(time.time())
        if self.json:
            head = {"ts": stamp, "level": "info", "logger": "dsop.query", "msg": "query"}
            head.update(self.static)
            text = "".join(orjson.dumps({**head, **fields}).decode() + "\n" for fields in pending)
        else:
            text = "".join(
                f"{stamp} INFO dsop.query: query "
                + " ".join(f"{key}={value}" for key, value in fields.items())
                + "\n"
                for fields in pending
            )
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream loses lines, not queries
            pass


#: The per-query log of this process.
QUERY_LOG = QueryLog()


def configure(
    level: str = "info",
    fmt: str = "json",
    stream: TextIO | None = None,
    static: dict[str, Any] | None = None,
) -> None:
    """Replaces the root logger's handlers with one writing ``fmt`` lines to ``stream``; the
    per-query lines (at info) go to the same stream."""
    QUERY_LOG.configure(
        enabled=_LEVELS[level] <= logging.INFO, fmt=fmt, stream=stream or sys.stderr, static=static
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(static) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[level])
