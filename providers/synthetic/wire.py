"""Protobuf wire-format fragments, for assembling hot responses from pre-encoded parts.

Concatenating encoded fields is a valid encoding of the message holding all of them (the
protobuf encoding is a sequence of fields, and parsers merge repeated and nested fields), so a
response can be built as bytes and parsed once: in Python that is several times cheaper than
setting the same fields one by one. Only length-delimited fields (messages, strings) of field
numbers below 32 are needed.
"""

from __future__ import annotations

from typing import Final

__all__ = ["field", "varint"]


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_TAGS: Final = tuple(varint(number << 3 | 2) for number in range(32))


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a message or string; field number below 32)."""
    size = len(payload)
    if size < 0x80:
        return _TAGS[number] + bytes((size,)) + payload
    if size < 0x4000:
        return _TAGS[number] + bytes((size & 0x7F | 0x80, size >> 7)) + payload
    return _TAGS[number] + varint(size) + payload
