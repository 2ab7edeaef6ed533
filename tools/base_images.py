"""The base images a rendered Dockerfile pins, made available to the local Docker engine.

    python -m tools.base_images path/to/Dockerfile [...]

For every `FROM <image>` that is not a build stage: nothing to do when the engine already has the
image; otherwise `docker pull`; and when no registry is reachable (the machines this template is
tested on), a stand-in is built and imported under the exact pinned name:

- Debian `<suite>` from `debootstrap --variant=minbase` plus the shared libraries a CPython build
  links against (the official `python:*-slim-<suite>` images are Debian `<suite>`-slim too);
- this machine's own CPython of the same minor version (found as `python3.X`) copied into
  /usr/local without its site-packages and test suites, pip from its bundled `ensurepip`;
- this machine's CA bundle, with SSL_CERT_FILE and REQUESTS_CA_BUNDLE pointing at it, so pip and
  Poetry inside a build trust the same certificate authorities as the host.

What differs from the official image: the patch version of Python (the machine's, recorded in
PYTHON_VERSION and in the image label), the pip version (the one ensurepip bundles), the CA
bundle and its two variables, and Debian packages beyond the listed libraries. The label
`sdk-deploy-template.stand-in` says which base is a stand-in.

Caching: the engine keeps imported images; the Debian root file system is also kept as a tar file
in ${XDG_CACHE_HOME:-~/.cache}/sdk-deploy-template, so a fresh engine needs no new debootstrap.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tools.images import docker

STAND_IN_LABEL = "sdk-deploy-template.stand-in"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the machine's CPython builds link against (ssl, ctypes, sqlite3, bz2, lzma, zlib, expat, curses,
# readline, uuid, crypt, nis), and the CA certificates.
LIBRARIES = [
    *["libssl3", "libffi8", "libsqlite3-0", "libbz2-1.0", "liblzma5", "zlib1g", "libexpat1", "libncursesw6"],
    *["libreadline8", "libuuid1", "libcrypt1", "libnsl2", "libtirpc3", "ca-certificates"],
]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's path, inside the image
PYTHON_TAG = re.compile(r"python:(?P<minor>3\.\d+)\.\d+-slim-(?P<suite>[a-z]+)")
# Not in Debian's slim images either.
LEFTOVERS = ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"]
# Python trimmed like the official image: no test suites, static library, optimised bytecode, site-packages.
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages"}
SKIP_FILE = re.compile(r"(^libpython.*\.a$)|(\.opt-[12]\.pyc$)")


class BaseImageError(RuntimeError):
    """A base image that is neither present, nor pullable, nor buildable here; says why."""


@dataclass(frozen=True)
class BaseImage:
    name: str
    origin: str  # "present", "pulled" or "stand-in"
    description: str  # the stand-in label, or the image id


def pinned_images(dockerfile: Path) -> list[str]:
    """The images the Dockerfile's FROM lines pin (stage names excluded), in order, without repeats."""
    stages: set[str] = set()
    images: list[str] = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if not match:
            continue
        source, stage = match.group(1), match.group(2)
        if source not in stages and source not in images:
            images.append(source)
        if stage:
            stages.add(stage)
    return images


def stand_in_label(name: str) -> str | None:
    label_of = f'{{{{index .Config.Labels "{STAND_IN_LABEL}"}}}}'
    result = docker("image", "inspect", "--format", label_of, name, check=False)
    label = result.stdout.strip()
    return label if result.returncode == 0 and label and label != "<no value>" else None


def ensure(name: str) -> BaseImage:
    """Make `name` available to the engine: present, else pulled, else a stand-in built here."""
    present = docker("image", "inspect", "--format", "{{.Id}}", name, check=False)
    if present.returncode == 0:
        label = stand_in_label(name)
        return BaseImage(name, "stand-in" if label else "present", label or present.stdout.strip())
    pulled = docker("pull", "--quiet", name, check=False, timeout=1800)
    if pulled.returncode == 0:
        return BaseImage(name, "pulled", pulled.stdout.strip())
    reason = pulled.stderr.strip().splitlines()[-1:] or ["no output"]
    print(f"{name}: cannot pull ({reason[0]}); building a stand-in", file=sys.stderr)
    return build_stand_in(name)


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = root / "sdk-deploy-template"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_python(minor: str) -> tuple[Path, str]:
    """The installation prefix and full version of this machine's python<minor> (pyenv builds included)."""
    found = shutil.which(f"python{minor}")
    if not found:
        raise BaseImageError(f"no python{minor} on this machine to put in a stand-in for python:{minor}")
    env = dict(os.environ)
    if shutil.which("pyenv"):  # a pyenv shim runs only the versions selected; select the newest of this minor
        listed = subprocess.run(["pyenv", "versions", "--bare"], capture_output=True, text=True, check=False).stdout
        matching = sorted(
            (v for v in listed.split() if re.fullmatch(rf"{re.escape(minor)}\.\d+", v)),
            key=lambda v: int(v.rsplit(".", 1)[1]),
        )
        if matching:
            env["PYENV_VERSION"] = matching[-1]
    code = "import platform, sys; print(sys.base_prefix); print(platform.python_version())"
    result = subprocess.run([found, "-c", code], capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise BaseImageError(f"python{minor} does not run: {result.stderr.strip()}")
    prefix, version = result.stdout.split()
    if not version.startswith(f"{minor}."):
        raise BaseImageError(f"python{minor} on this machine is {version}")
    return Path(prefix), version


def debian_rootfs(suite: str) -> Path:
    """A tar of Debian `suite` (minbase + LIBRARIES), cached; built with debootstrap when missing."""
    digest = hashlib.sha256(" ".join([suite, DEBIAN_MIRROR, *LIBRARIES, *LEFTOVERS]).encode()).hexdigest()[:12]
    tar = cache_dir() / f"debian-{suite}-minbase-{digest}.tar"
    if tar.is_file():
        return tar
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise BaseImageError(
            "a stand-in base image needs root and debootstrap (apt-get install -y debootstrap), "
            "or registry access to pull the pinned image"
        )
    with tempfile.TemporaryDirectory(dir=cache_dir()) as scratch:
        root = Path(scratch) / "root"
        command = ["debootstrap", "--variant=minbase", f"--include={','.join(LIBRARIES)}", suite, str(root)]
        result = subprocess.run([*command, DEBIAN_MIRROR], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BaseImageError(f"debootstrap {suite} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        for leftover in LEFTOVERS:
            for path in (root / leftover).glob("*"):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        for host_file in ["etc/resolv.conf", "etc/hostname"]:  # the engine provides these
            (root / host_file).unlink(missing_ok=True)
        partial = tar.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tar)
    return tar


def copy_python(prefix: Path, target: Path) -> None:
    """Copy a CPython installation to target (= /usr/local), trimmed, with its own paths rewritten."""
    old = str(prefix).encode()
    for directory, dirnames, filenames in os.walk(prefix):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        destination = target / Path(directory).relative_to(prefix)
        destination.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            if SKIP_FILE.search(name):
                continue
            source = Path(directory) / name
            copied = destination / name
            if source.is_symlink():
                copied.symlink_to(os.readlink(source))
                continue
            shutil.copy2(source, copied)
            data = copied.read_bytes()
            if old in data and b"\0" not in data[:8192]:  # scripts, sysconfig data, Makefile, .pc files
                copied.write_bytes(data.replace(old, b"/usr/local"))


def build_stand_in(name: str) -> BaseImage:
    match = PYTHON_TAG.fullmatch(name)
    if not match:
        raise BaseImageError(f"{name}: only python:<3.X.Y>-slim-<suite> images have a stand-in")
    minor, suite = match.group("minor"), match.group("suite")
    prefix, version = local_python(minor)
    rootfs = debian_rootfs(suite)
    label = f"debootstrap {suite} minbase + this machine's Python {version} in /usr/local (official: {name})"
    with tempfile.TemporaryDirectory(dir=cache_dir()) as scratch:
        root = Path(scratch) / "root"
        root.mkdir()
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-xf", str(rootfs)], check=True)
        install_python(root, prefix, minor)
        docker_import(
            root,
            name,
            [
                "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                f"ENV PYTHON_VERSION={version}",
                f"ENV SSL_CERT_FILE={CA_BUNDLE}",
                f"ENV REQUESTS_CA_BUNDLE={CA_BUNDLE}",
                f'LABEL {STAND_IN_LABEL}="{label}"',
                'CMD ["python3"]',
            ],
        )
    return BaseImage(name, "stand-in", label)


def install_python(root: Path, prefix: Path, minor: str) -> None:
    """The CPython at `prefix` as root's /usr/local Python, with pip, and this machine's CA bundle."""
    copy_python(prefix, root / "usr" / "local")
    (root / f"usr/local/lib/python{minor}/site-packages").mkdir(exist_ok=True)  # pip goes here
    for link in ["python3", "python"]:
        if not (root / "usr/local/bin" / link).exists():
            (root / "usr/local/bin" / link).symlink_to(f"python{minor}")
    verify_paths = ssl.get_default_verify_paths()
    shutil.copyfile(verify_paths.cafile or verify_paths.openssl_cafile, root / CA_BUNDLE.lstrip("/"))
    for command in (["ldconfig"], [f"/usr/local/bin/python{minor}", "-m", "ensurepip", "--default-pip"]):
        result = subprocess.run(["chroot", str(root), *command], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BaseImageError(f"{' '.join(command)} in the stand-in failed:\n{result.stdout}{result.stderr}")


def docker_import(root: Path, name: str, changes: list[str]) -> None:
    """`docker import` of the file system at `root` (without /dev, /proc, /sys contents) as `name`."""
    excludes = ["--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*"]
    tar = subprocess.Popen(["tar", "--numeric-owner", *excludes, "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    options = [arg for change in changes for arg in ("--change", change)]
    imported = subprocess.run(["docker", "import", *options, "-", name], stdin=tar.stdout, capture_output=True)
    tar.wait()
    if imported.returncode != 0 or tar.returncode != 0:
        raise BaseImageError(f"docker import {name} failed: {imported.stderr.decode(errors='replace')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dockerfiles", nargs="+", type=Path)
    for dockerfile in parser.parse_args().dockerfiles:
        for name in pinned_images(dockerfile):
            image = ensure(name)
            print(f"{image.name}: {image.origin} ({image.description})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
