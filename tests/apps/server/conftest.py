"""A real uvicorn server on 127.0.0.1 (a free port), in a thread, serving the export tests' tiny bundles.

uvicorn and the application are imported when a server starts: the test modules skip, saying why, where the
``serve`` extra (fastapi, uvicorn, python-multipart, highdicom) is missing.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from medseg.apps.server import ServerConfig
from tests.export.conftest import bundles, tiny_runs  # noqa: F401  (the same tiny bundles)

KEY = "test-key-0123456789abcdef"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Server:
    """A running server: its port and its temporary folder."""

    port: int
    temp: Path

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            conn.close()

    def wait_busy(self, deadline_s: float = 30.0) -> None:
        """Until a request holds a queue place (admitted: it is uploading, queued or running)."""
        end = time.monotonic() + deadline_s
        while not self.request("GET", "/ready").json()["busy"]:
            assert time.monotonic() < end, "no request was admitted"
            time.sleep(0.02)

    def wait_idle(self, deadline_s: float = 30.0) -> None:
        """Until every queue place is free again (jobs end after their request may have been answered)."""
        end = time.monotonic() + deadline_s
        while self.request("GET", "/ready").json()["busy"]:
            assert time.monotonic() < end, "the queue did not drain"
            time.sleep(0.02)


def multipart(filename: str, data: bytes, field: str = "file") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with one file and its headers."""
    boundary = "medseg-test-boundary-7d1f"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-API-Key": KEY}


@contextmanager
def running(config: ServerConfig) -> Iterator[Server]:
    """``config`` served by uvicorn in a thread on a socket bound to a free port; stopped on exit."""
    import uvicorn

    from medseg.apps.server.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < end, "the server did not start"
        time.sleep(0.01)
    try:
        yield Server(sock.getsockname()[1], config.temp_dir)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def server(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    """Both ONNX bundles (``onnx3``, ``onnx2``); one worker, no waiting place; 1 MB uploads."""
    temp = tmp_path_factory.mktemp("server-temp")
    config = ServerConfig(
        models=(bundles["onnx3"], bundles["onnx2"]),
        api_keys=frozenset({KEY}),
        max_upload_mb=1.0,
        max_queue=0,
        workers=1,
        timeout_s=60,
        temp_dir=temp,
    )
    with running(config) as started:
        yield started
