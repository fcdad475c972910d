"""Real MLflow services for tests, on 127.0.0.1 only, and the README commands that start them.

`start_service` runs a server command (`mlflow server`, `mlflow ui`, `mlflow models serve`) in a session
of its own, waits for it to answer with a bounded loop, and returns a `Service`; `Service.stop` ends the
whole session — the uvicorn workers and the detached `huey_consumer` job runners included — by process id
and checks that nothing of it is left. `readme_commands` reads the commands of a README section, so that
tests run what users are told to run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

HOST = "127.0.0.1"
README = Path(__file__).resolve().parents[1] / "README.md"


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def readme_commands(section: str) -> list[str]:
    """The commands in the fenced code blocks of README section `## {section}`, comments stripped."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if match is None:
        raise AssertionError(f"README.md has no section '## {section}'")
    commands = []
    for block in re.findall(r"^```(?:bash|sh|console)?\n(.*?)^```", match.group(1), flags=re.M | re.S):
        for line in block.splitlines():
            command = line.split(" #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def command_starting(commands: list[str], prefix: str) -> str:
    """The one command that starts with `prefix` (it may be shown more than once)."""
    found = sorted({c for c in commands if c.startswith(prefix)})
    if len(found) != 1:
        raise AssertionError(f"expected one README command starting {prefix!r}, found {found}")
    return found[0]


def session_processes(session_id: int) -> list[psutil.Process]:
    """Every live process of a session: a server, its workers, and children that left its process group."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return members


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to each of the service's processes, SIGKILL after `timeout` s; fail if any is left."""
        session = self.process.pid
        family = {p.pid: p for p in session_processes(session)}
        with contextlib.suppress(psutil.NoSuchProcess):
            family.update({p.pid: p for p in psutil.Process(session).children(recursive=True)})
        for process in family.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(list(family.values()), timeout=timeout)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        self.process.wait(timeout=10)  # reap it: a zombie child would look alive
        left = [p for p in [*family.values(), *session_processes(session)] if _alive(p)]
        if left:
            raise AssertionError(f"processes of {self.url} outlived stop(): {sorted({p.pid for p in left})}")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_mlflow_server(command: str, folder: Path, env: Mapping[str, str], port: int) -> Service:
    """An `mlflow server` command run in `folder`, ready once its /health answers."""
    return start_service(command, folder, env, f"http://{HOST}:{port}", "/health", folder / "log.txt")


def start_service(
    command: str | list[str],
    cwd: Path,
    env: Mapping[str, str],
    url: str,
    ready_path: str,
    log: Path,
    timeout: float = 240,
) -> Service:
    """Start `command` in its own session; return once GET `url + ready_path` answers 200.

    Fails, with the end of the service's log, if it exits or does not answer within `timeout` s.
    """
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"tests only talk to {HOST}, not {url}")
    args = shlex.split(command) if isinstance(command, str) else command
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = Service(process, url, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            service.stop()
            raise AssertionError(f"{args!r} exited {process.returncode}:\n{service.log_tail()}")
        try:
            with urllib.request.urlopen(url + ready_path, timeout=5) as response:
                if response.status == 200:
                    return service
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    service.stop()
    raise AssertionError(
        f"{args!r} did not answer on {url + ready_path} in {timeout:.0f} s:\n{service.log_tail()}"
    )
