"""Development tokens: Maskinporten-shaped tokens signed with the key `dsop certs init` makes.

For demos, tests and trying the hub out; production tokens come from Maskinporten.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from hub.auth import mint_token
from hub.certs import DEV_AUDIENCE, DEV_ISSUER
from hub.profiles import load_profiles


def scopes_for(organisation: str, services: Iterable[str] | None = None) -> list[str]:
    """The scopes of the services (default: every service) the organisation consumes."""
    profiles = load_profiles()
    wanted = set(services) if services is not None else None
    return sorted(
        scope
        for name, profile in profiles.services.items()
        if organisation in profile.consumers and (wanted is None or name in wanted)
        for scope in profile.scopes
    )


class DevTokens:
    """A callable giving a fresh token for an organisation (pass it as HubClient(token=...))."""

    def __init__(self, cert_dir: Path, organisation: str, scopes: list[str] | None = None) -> None:
        self.key = load_pem_private_key((cert_dir / "issuer.key").read_bytes(), None)
        self.organisation = organisation
        self.scopes = scopes if scopes is not None else scopes_for(organisation)

    def __call__(self) -> str:
        return mint_token(
            self.key,
            organisation=self.organisation,
            scopes=self.scopes,
            issuer=DEV_ISSUER,
            audience=DEV_AUDIENCE,
        )
