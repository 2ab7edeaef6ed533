"""Azurite, the Azure Storage emulator, for the runtime's queue tests: installed from
tools/azurite/package-lock.json with `npm ci`, cached, and started on free loopback ports.

The install lives in ${XDG_CACHE_HOME:-~/.cache}/sdk-deploy-template/azurite/<hash of the lock>, so a fresh
clone (CI's) installs once and every later run reuses it; a changed lock installs anew. Azurite 3.37 refuses
API versions newer than it knows unless started with --skipApiVersionCheck (the Python SDK sends newer ones).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools import npm_tools

SOURCE = Path(__file__).resolve().parent / "azurite"
# The emulator's documented development account (public, the same in every Azurite: not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    """npm or node is missing, `npm ci` failed, or Azurite did not start: the message says which."""


@dataclass
class Azurite:
    """A running emulator (one process per service); `connection_string` is what
    AZURE_STORAGE_CONNECTION_STRING takes."""

    processes: list[subprocess.Popen[bytes]]
    queue_port: int
    table_port: int

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{ACCOUNT};"
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def install_dir() -> Path:
    """The cached install of tools/azurite for the current lock (installed on first use)."""
    try:
        return npm_tools.install_dir(SOURCE, "azurite")
    except npm_tools.NpmToolError as error:
        raise AzuriteError(str(error)) from None


def start(workspace: Path) -> Azurite:
    """Azurite's queue and table services on free loopback ports, keeping their data in `workspace`."""
    node = shutil.which("node")
    if node is None:
        raise AzuriteError("node is not installed: install Node.js (Debian: apt-get install nodejs)")
    root = install_dir()
    azurite = Azurite([], _free_port(), _free_port())
    for service, port in [("queue", azurite.queue_port), ("table", azurite.table_port)]:
        script = root / "node_modules" / "azurite" / "dist" / "src" / service / "main.js"
        command = [node, str(script), f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
        command += ["--location", str(workspace / service), "--skipApiVersionCheck", "--silent"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        azurite.processes.append(process)
        _wait_for(port, process, azurite)
    return azurite


def _wait_for(port: int, process: subprocess.Popen[bytes], azurite: Azurite) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    azurite.stop()
    errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
    raise AzuriteError(f"Azurite did not listen on 127.0.0.1:{port} within 30 s:\n{errors}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
