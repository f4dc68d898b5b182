"""Child processes of a benchmark (bank simulator, hub), free ports, and /proc readings.

Every child runs in its own session (process group), so stopping it reaches whatever it spawned
too (the simulator's worker processes), and a Ctrl-C at the terminal reaches only the driver,
which then stops the children itself, in order. Children also get a parent-death signal, so
even a driver killed outright (SIGKILL) leaves no strays behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

from hub.certs import DEV_ISSUER

#: The repository root, where ``clients`` and the other packages are.
ROOT: Final = Path(__file__).resolve().parent.parent
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG: Final = 1


class ChildFailed(RuntimeError):
    """A child process exited early or did not become ready in time; the message ends with
    the tail of its log."""


# -- ports ---------------------------------------------------------------------------------


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(count: int, host: str = "127.0.0.1", attempts: int = 200) -> int:
    """The first of ``count`` consecutive ports that are free now.

    Blocks are looked for below the kernel's ephemeral range first: ports there are handed out
    to outgoing connections at any moment (the hub's own connections to banks, among them), so
    a block found free there can be taken before the simulator binds it. Only if that fails are
    blocks around a port the kernel picks (bind to port 0) tried.
    """
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(attempts):
        if low - count > 20_000:
            base = rng.randrange(20_000, low - count)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
                base = probe.getsockname()[1]
            if base + count > 65_535:
                continue
        if all(_bindable(host, port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no block of {count} free consecutive ports on {host}")


# -- /proc ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(child) for child in text.split())
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (fields 14 and 15 of /proc/PID/stat);
    0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants. Children's time is read directly, not
    from cutime/cstime, which count only children already exited and waited for."""
    return sum(cpu_seconds(member) for member in process_tree(pid))


def machine_cpu_seconds() -> float:
    """CPU seconds all processes on the machine have used so far (/proc/stat: everything but
    idle and iowait): with the readings of the run's own processes, shows whether something
    else was using the cores during a measure."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]
    # guest time is already counted in user time.
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of one process in MiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_peak_rss_mb(pid: int) -> float:
    """Sum of the peak RSS of a process and its descendants (each peak may fall at a
    different moment, so this is an upper bound of the tree's peak)."""
    return sum(peak_rss_mb(member) for member in process_tree(pid))


# -- children --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: only async-signal-safe work, one syscall.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _environment() -> dict[str, str]:
    # Children run in the benchmark's own directory (see Child), so the repository must be
    # importable from anywhere, installed or not.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Child:
    """One child process: ``python -m MODULE ...`` (``clients``, the ``dsop`` command, unless
    told) with its output in a log file.

    It runs in the log's directory, the benchmark's temporary one: whatever it writes to
    relative paths (the hub's audit database and signing key) goes away with the run instead
    of piling up in the repository.
    """

    def __init__(self, name: str, argv: Sequence[str], log: Path, module: str = "clients") -> None:
        self.name = name
        self.argv = [sys.executable, "-m", module, *argv]
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> None:
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                self.argv,
                cwd=self.log.parent,
                env=_environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )

    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failed(self, why: str) -> ChildFailed:
        return ChildFailed(f"{self.name}: {why}; its log ({self.log}) ends:\n{self.tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL to what is left after ``timeout``."""
        process = self._process
        if process is None:
            return
        self._kill_group(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(signal.SIGKILL)
            process.wait(5.0)
        # The leader may exit before its workers do: sweep the group.
        deadline = time.monotonic() + timeout
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._kill_group(signal.SIGKILL)

    def _kill_group(self, signum: int) -> None:
        # The group id is the leader's pid (start_new_session): only this child's processes.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        return True


async def wait_for_file(path: Path, child: Child, limit: float) -> None:
    """Waits until ``path`` exists (the child's sign of readiness), at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    # A stat every 50 ms: too little to be worth a thread.
    while not os.path.exists(path):  # noqa: ASYNC240
        code = child.exit_code()
        if code is not None:
            raise child.failed(f"exited with code {code} before it was ready")
        if time.monotonic() > deadline:
            raise child.failed(f"not ready after {limit:.0f} s")
        await asyncio.sleep(0.05)


class Children:
    """Owns the children of one run and stops them all, newest first, on exit, whatever
    the exit (error, Ctrl-C, SIGTERM turned into KeyboardInterrupt)."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def start(self, child: Child) -> Child:
        self._children.append(child)
        child.start()
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self._children:
            self._children.remove(child)

    def stop_all(self) -> None:
        while self._children:
            self._children.pop().stop()

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop_all()


@dataclass(frozen=True, slots=True)
class Tls:
    """Where the certificates are (``dsop certs init``), or None for plaintext; and the same
    directory whatever the mode, for the development token issuer's keys it also holds (the
    hub wants a token from every agency, and over plaintext that is the only identity)."""

    certs: Path | None
    keys: Path

    def args(self) -> list[str]:
        return ["--insecure"] if self.certs is None else ["--certs", str(self.certs)]

    def hub_args(self) -> list[str]:
        if self.certs is not None:
            return self.args()  # the hub finds the issuer's keys in the certificates' directory
        return [
            "--insecure",
            "--token-jwks", str(self.keys / "issuer-jwks.json"),
            "--token-issuer", DEV_ISSUER,
        ]  # fmt: skip


def make_certs(directory: Path) -> Path:
    """Creates development certificates with the CLI (``dsop certs init DIR``)."""
    subprocess.run(
        [sys.executable, "-m", "clients", "certs", "init", str(directory)],
        cwd=directory.parent,
        env=_environment(),
        check=True,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    return directory


def bank_simulator(
    *,
    banks: int,
    seed: int,
    base_port: int,
    processes: int,
    registry: Path,
    kar_port: int,
    tls: Tls,
    log: Path,
    faults: Path | None = None,
) -> Child:
    return Child(
        "bank simulator",
        [
            "bank", "simulate",
            "--banks", str(banks),
            "--seed", str(seed),
            "--base-port", str(base_port),
            "--processes", str(processes),
            "--registry-out", str(registry),
            "--kar-port", str(kar_port),
            *(["--faults", str(faults)] if faults is not None else []),
            *tls.args(),
        ],
        log,
    )  # fmt: skip


def hub(
    *,
    registry: Path,
    port_file: Path,
    window: int,
    kar: str,
    tls: Tls,
    log: Path,
    audit: bool = True,
    listen: str = "127.0.0.1:0",
    extra: Sequence[str] = (),
) -> Child:
    return Child(
        "hub",
        [
            "hub", "serve",
            "--listen", listen,
            "--metrics-listen", "127.0.0.1:0",
            "--registry", str(registry),
            "--port-file", str(port_file),
            "--window", str(window),
            "--kar", kar,
            *([] if audit else ["--audit", "none"]),
            *extra,
            *tls.hub_args(),
        ],
        log,
    )  # fmt: skip
