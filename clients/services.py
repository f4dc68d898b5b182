"""The DSOP services an agency can name, with their legal mandate texts (DSOP.md §4).

A convenience for the CLI: the hub checks the mandate against its own service profiles.
"""

from __future__ import annotations

from typing import Final

MANDATES: Final = {
    "skatt-kontroll": (
        "Skatteforvaltningsloven § 10-2 første ledd, jf. § 10-14, "
        "jf. skatteforvaltningsforskriften § 10-2-1"
    ),
    "politi-utlevering": "Straffeprosessloven §210 (3) første punktum",
    "nav-kontroll": "Folketrygdloven § 21-4 første ledd",
    "konkursbehandling": "kkl. §156 (3) og (4), jf. kkfor.§21",
    "oppgjor-etter-dodsfall": (
        "Arveloven § 92 første ledd og § 118, jf. § 88 a, jf. forskrift om Digitalt dødsbo"
    ),
    "vergekontroll": (
        "Vergemålsloven § 54 (2), jf. vergemålsforskriften § 20 (2), "
        "jf. vergemålsforskriften § 20a (1) b-e"
    ),
    "fi-utlegg": "FI-Utlegg-Test",
}

#: The consumer organisation behind each service (for picking a client certificate).
CONSUMERS: Final = {
    "skatt-kontroll": "974761076",
    "politi-utlevering": "915429785",
    "nav-kontroll": "889640782",
    "konkursbehandling": "974760673",
    "oppgjor-etter-dodsfall": "991825827",
    "vergekontroll": "986186999",
    "fi-utlegg": "974761076",
}
