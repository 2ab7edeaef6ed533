"""A small closed-loop HTTP load generator, run as its own process so it does not share the
server's interpreter. Prints one JSON line: requests, errors, requests/s, p50 and p99 latency (ms).

    python -m benchmarks.load --url http://127.0.0.1:8080/health --duration 5 --concurrency 8
    python -m benchmarks.load --url http://127.0.0.1:8080/webhook --webhook-secret S --app-folder <app>

Signed webhook events come from the rendered app's own helpers (tools/platform_events.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tools.platform_events import signed_event


def worker(
    url: str, deadline: float, secret: str | None, app_folder: Path, latencies: list[float], errors: list[int]
) -> None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    while time.perf_counter() < deadline:
        body, headers = signed_event(app_folder.name, secret) if secret is not None else (None, {})
        started = time.perf_counter()
        try:
            connection.request("POST" if body is not None else "GET", parts.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            ok = 200 <= response.status < 300
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            ok = False
        latencies.append(time.perf_counter() - started)
        if not ok:
            errors.append(1)
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--webhook-secret", help="POST signed platform events instead of GET")
    parser.add_argument("--app-folder", type=Path, help="the rendered app whose helpers build and sign events")
    args = parser.parse_args()
    latencies: list[float] = []
    errors: list[int] = []
    deadline = time.perf_counter() + args.duration
    threads = [
        threading.Thread(
            target=worker, args=(args.url, deadline, args.webhook_secret, args.app_folder, latencies, errors)
        )
        for _ in range(args.concurrency)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "errors": len(errors),
                "rps": len(latencies) / elapsed,
                "p50_ms": statistics.median(ordered) * 1000,
                "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            }
        )
    )


if __name__ == "__main__":
    main()
