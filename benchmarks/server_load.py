"""Loopback load test of `medseg serve`: N concurrent clients POST scans to a real server (its own process,
uvicorn on 127.0.0.1), each M times; counts failed requests and prints p50/p95 latency and throughput, next to
one client alone on the same server (the reference, measured in the same run). Not a test: figures go into
docs/benchmarks.md by hand, with the command that made them.

    python benchmarks/server_load.py hippocampus.medseg ../shared/data/msd-hippocampus/imagesTr \\
        --clients 8 --requests 5 --workers 2

The server is started with ``--max-queue`` = clients (nobody should be turned away: a 429 counts as a
failure here) and ``--workers`` predictions at once. Scans are taken in name order from the folder and sent
round-robin.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _body(path: Path) -> tuple[bytes, str]:
    boundary = "medseg-load-" + secrets.token_hex(8)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode(), boundary


def _post(port: int, model: str, body: bytes, boundary: str, key: str) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-API-Key": key}
        conn.request("POST", f"/v1/models/{model}/predict", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    except OSError:
        return 0, time.perf_counter() - start
    finally:
        conn.close()


def _wait_ready(port: int, server: subprocess.Popen, deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not become ready")


def _load(port: int, model: str, bodies: list[tuple[bytes, str]], key: str, clients: int, requests: int) -> dict:
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for r in range(requests):
            body, boundary = bodies[(c * requests + r) % len(bodies)]
            got = _post(port, model, body, boundary, key)
            with lock:
                results.append(got)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies = sorted(s for _, s in results)
    failed = sum(1 for status, _ in results if status != 200)
    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {
        "clients": clients,
        "requests": len(results),
        "failed": failed,
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(q[18], 3),
        "throughput_per_s": round(len(results) / wall, 2),
        "wall_s": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("scans", type=Path, help="folder of scans to send")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--workers", type=int, default=2, help="medseg serve --workers")
    parser.add_argument("--scans-used", type=int, default=10, help="how many scans of the folder to send")
    args = parser.parse_args()
    scans = sorted(p for p in args.scans.iterdir() if p.name.lower().endswith(SUFFIXES))[: args.scans_used]
    if not scans:
        print(f"{args.scans}: no scans", file=sys.stderr)
        return 2
    bodies = [_body(p) for p in scans]
    key = secrets.token_hex(16)
    port = _free_port()
    model = args.bundle.name.removesuffix(".medseg")
    medseg = str(Path(sys.executable).with_name("medseg"))
    with tempfile.TemporaryDirectory() as temp:
        command = [medseg, "serve", str(args.bundle), "--port", str(port), "--workers", str(args.workers)]
        command += ["--max-queue", str(args.clients), "--temp-dir", temp]
        server = subprocess.Popen(command, env={**os.environ, "MEDSEG_API_KEYS": key}, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(port, server)
            _post(port, model, *bodies[0], key)  # warm-up: the first session run allocates
            alone = _load(port, model, bodies, key, clients=1, requests=len(bodies))
            loaded = _load(port, model, bodies, key, clients=args.clients, requests=args.requests)
            left = list(Path(temp).iterdir())
        finally:
            server.terminate()
            server.wait(timeout=30)
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "workers": args.workers, "alone": alone, "loaded": loaded}
    report["temp_files_left"] = len(left)
    print(json.dumps(report, indent=1))
    print(
        "\n| clients | requests | failed | p50 s | p95 s | requests/s |\n|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {r['clients']} | {r['requests']} | {r['failed']} | {r['p50_s']} | {r['p95_s']} "
            f"| {r['throughput_per_s']} |"
            for r in (alone, loaded)
        )
    )
    return 0 if loaded["failed"] == 0 and not left else 1


if __name__ == "__main__":
    sys.exit(main())
