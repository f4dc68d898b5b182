"""``python -m benchmarks SCENARIO [options]``: one sub-command per scenario."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from benchmarks import enforcement, fanout, interactive, streams, transactions, workers


class Scenario(Protocol):
    """What a scenario module provides to plug in here."""

    NAME: str
    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


SCENARIOS: tuple[Scenario, ...] = (
    enforcement,
    interactive,
    fanout,
    transactions,
    streams,
    workers,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    scenarios = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for scenario in SCENARIOS:
        sub = scenarios.add_parser(scenario.NAME, help=scenario.HELP, description=scenario.HELP)
        scenario.add_arguments(sub)
        sub.set_defaults(run=scenario.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = tuple(argv)
    # SIGTERM unwinds like Ctrl-C, so the scenario's finally blocks stop its child processes.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
