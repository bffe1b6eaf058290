"""Bounded load test of `colorjax serve` on 127.0.0.1: latency, throughput, memory, failures.

Starts the server as its own process (so its memory is its own), waits for it, warms each
shape bucket once, then runs N client threads for a fixed time, each posting photos in a loop;
one more client keeps hanging up mid-upload. Records p50/p99 latency, requests/s, every
non-200 answer and the server's resident memory over the run, as one JSON file:

    python benchmarks/serve_load.py --clients 4 --seconds 60 \
        --photos ../shared/data/bsds500/val --out benchmarks/results/serve-load-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process from /proc (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_photos(folder: str | None, count: int) -> list[bytes]:
    """Up to `count` JPEG/PNG files' bytes from a folder, or synthetic PNGs without one."""
    if folder and Path(folder).is_dir():
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".png"))
        return [p.read_bytes() for p in files[:count]]
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (321, 481, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def post(base: str, body: bytes, model: str | None) -> tuple[int, float]:
    """(status, seconds) of one colorize request."""
    query = f"?model={model}" if model else ""
    req = urllib.request.Request(base + "/api/colorize" + query, data=body, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as res:
            res.read()
            status = res.status
    except urllib.error.HTTPError as err:
        status = err.code
    except OSError:
        status = -1  # connection refused or reset: counted as a failure
    return status, time.perf_counter() - start


def hang_up(base: str, stop: threading.Event, counter: list[int]) -> None:
    """Start uploads and leave half-way, again and again."""
    host, port = base.removeprefix("http://").split(":")
    while not stop.is_set():
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /api/colorize HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n"
                + b"\xff\xd8"
                + b"\0" * 20000
            )
        counter[0] += 1
        stop.wait(0.5)


def main() -> int:
    """Run the load test and write its record; exit 1 if any request failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weights to serve (default: default)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--photos", default=None, help="folder of photos (default: synthetic)")
    parser.add_argument("--count", type=int, default=8, help="photos to cycle through")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "colorjax.cli", "serve", "--port", str(port)]
    command += ["--max-waiting", str(4 * args.clients)]
    if args.weights:
        command += ["--weights", args.weights]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(base + "/api/models", timeout=300) as res:
                    model = json.loads(res.read())["models"][0]["name"]
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.5)
        photos = load_photos(args.photos, args.count)
        for body in photos:  # every shape bucket compiled before the clock starts
            status, _ = post(base, body, model)
            assert status == 200, status
        rss = [rss_mb(server.pid)]
        latencies: list[float] = []
        failures: list[int] = []
        stop = threading.Event()
        lock = threading.Lock()

        def client(k: int) -> None:
            i = k
            while not stop.is_set():
                status, seconds = post(base, photos[i % len(photos)], model)
                i += 1
                with lock:
                    (latencies if status == 200 else failures).append(
                        seconds if status == 200 else status
                    )

        hung_up = [0]
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        threads.append(threading.Thread(target=hang_up, args=(base, stop, hung_up)))
        start = time.perf_counter()
        for t in threads:
            t.start()
        while time.perf_counter() - start < args.seconds:
            time.sleep(0.5)
            rss.append(rss_mb(server.pid))
        stop.set()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        rss.append(rss_mb(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=60)

    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    record = {
        "what": "colorjax serve bounded load test on 127.0.0.1",
        "command": " ".join([sys.executable, *sys.argv]),
        "model": model,
        "clients": args.clients,
        "seconds": round(wall, 2),
        "photos": args.photos or "synthetic 481x321 PNG",
        "requests_ok": len(latencies),
        "failed": len(failures),
        "failed_statuses": sorted(set(failures)),
        "mid_upload_hangups": hung_up[0],
        "throughput_rps": round(len(latencies) / wall, 3),
        "latency_p50_s": round(q[49], 3),
        "latency_p99_s": round(q[98], 3),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "server_rss_mb": {
            "after_warm_up": round(rss[0], 1),
            "max": round(max(rss), 1),
            "end": round(rss[-1], 1),
        },
        "host": {
            "cpu_count": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
