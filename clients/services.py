"""The DSOP services an agency can name, with their legal mandate texts and consumers.

Read from the hub's shipped service profiles (hub/data/profiles.toml), so the command line's
defaults never drift from what the hub checks. A convenience only: the hub still checks every
mandate against its own (possibly overridden) profiles.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from hub.profiles import load_profiles

_PROFILES = load_profiles()

#: Service -> its legal mandate text (the first its profile lists).
MANDATES: Final = MappingProxyType(
    {name: p.default_mandate for name, p in _PROFILES.services.items()}
)

#: Service -> the consumer organisation behind it (for picking a client certificate).
CONSUMERS: Final = MappingProxyType(
    {name: sorted(p.consumers)[0] for name, p in _PROFILES.services.items()}
)
