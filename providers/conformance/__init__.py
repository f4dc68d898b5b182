"""The bank provider conformance suite: checks a running bank, gRPC or REST, against the
standard's contract (DSOP.md §2-§6). ``dsop conformance`` runs it from the command line
(clients/conformance_cli.py); providers/README.md explains the cases.
"""

from providers.conformance.suite import CASE_NAMES, CaseResult, Fixture, Report, run_conformance
from providers.conformance.target import CallError, GrpcTarget, RestTarget, Target

__all__ = [
    "CASE_NAMES",
    "CallError",
    "CaseResult",
    "Fixture",
    "GrpcTarget",
    "Report",
    "RestTarget",
    "Target",
    "run_conformance",
]
