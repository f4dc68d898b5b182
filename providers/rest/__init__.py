"""The standard's REST APIs: the JSON mapping, any provider served as a REST bank, the
synthetic KAR as REST, and hosting them over HTTP/2 (the bridge client is hub/rest.py).

Names are imported on first use, so the hub, which needs only the mapping, does not load the
server or the synthetic dataset.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HostedApp": "providers.rest.server",
    "RestBankApp": "providers.rest.bank",
    "RestKarApp": "providers.rest.kar",
    "rest_app": "providers.rest.bank",
    "rest_kar_app": "providers.rest.kar",
    "start_app": "providers.rest.server",
    "start_rest_bank": "providers.rest.server",
    "stop_app": "providers.rest.server",
}
__all__ = [
    "HostedApp",
    "RestBankApp",
    "RestKarApp",
    "rest_app",
    "rest_kar_app",
    "start_app",
    "start_rest_bank",
    "stop_app",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'providers.rest' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
