"""`dsop demo` runs banks and a hub as processes, queries them, and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _session_members(session: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # field 6 of stat: the session id
            members.append(int(stat.parent.name))
    return members


def test_demo_runs_queries_and_stops_every_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "clients", "demo", "--banks", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Enforcement balance query" in out
    assert "summary: 5 banks asked, 5 answered, 0 failed" in out
    assert "transactions in this page" in out
    assert "refused: INVALID_ARGUMENT: party_id" in out
    assert "Demo finished" in out
    # The demo ran in its own session: once it returned, nothing of that session is left.
    assert _session_members(process.pid) == []
