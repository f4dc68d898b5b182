"""The agency side: the hub client library (async and sync) and the ``dsop`` command."""

from clients.client import ClientTls, HubClient, SyncHubClient, make_query

__all__ = ["ClientTls", "HubClient", "SyncHubClient", "make_query"]
