"""Requests gunicorn itself refuses, before the app sees them, get the service's JSON error body and a 4xx, under
the real ``recommender serve`` (gunicorn, InlineWorker, the app on embedded defaults), on raw sockets: on a
new connection (the thread pool's path) and on a kept-alive one (served on the event loop's thread)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.recommender.served_app import Client, service_document, wait_for, write_config
from tests.redis_harness import free_port

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def port(tmp_path_factory) -> Iterator[int]:
    tmp_path = tmp_path_factory.mktemp("refusals")
    port = free_port()
    config_path = tmp_path / "config.yaml"
    write_config(config_path, service_document(tmp_path, None, service={"port": port}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen([sys.executable, "-m", "recommender.cli.main", "--config", str(config_path), "serve"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)  # fmt: skip
    client = Client(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        try:
            return client.get("/readyz").status == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout=60, interval=0.2)
        yield port
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def exchange(port: int, raw: bytes, *, kept_alive: bool) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` (after one valid request on the same connection if ``kept_alive``); the answer to it,
    read to the end of the connection (a refusal closes it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if kept_alive:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200")
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    return int(lines[0].split(" ")[1]), headers, body


def get(path: str = "/healthz", headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode()


REFUSED = [
    # (request, status, error code, field, words the message must hold)
    (get(headers=f"X-Big: {'a' * 20_000}\r\n"), 431, "request_header_fields_too_large", None, ["8190 bytes"]),
    (get(headers="".join(f"X-H{i}: 1\r\n" for i in range(101))), 431, "request_header_fields_too_large", None,
     ["100 header fields"]),
    (get("/" + "a" * 10_000), 414, "uri_too_long", None, ["4094 bytes"]),
    (get(headers="Bad Header: 1\r\n"), 400, "bad_request", "Bad Header", ["header"]),
    (b"G@T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request", None, ["method"]),
    (b"GET / HTTP/7.1\r\nHost: t\r\n\r\n", 400, "bad_request", None, ["version"]),
    (b"POST /v1/score HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "bad_request",
     "Transfer-Encoding", ["transfer-encoding"]),
    (b"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "bad_request",
     "Content-Length", ["header"]),
    (b"POST /v1/score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"zz\r\n{}\r\n0\r\n\r\n", 400, "bad_request", None, ["chunk"]),
]  # fmt: skip


@pytest.mark.parametrize("kept_alive", [False, True], ids=["new-connection", "kept-alive"])
@pytest.mark.parametrize(("raw", "status", "code", "field", "words"), REFUSED)
def test_gunicorn_refusals_are_json(port, raw, status, code, field, words, kept_alive):
    answer_status, headers, body = exchange(port, raw, kept_alive=kept_alive)
    assert answer_status == status, body
    assert headers["content-type"] == "application/json"
    if "chunk" not in words:  # refused by gunicorn itself, not by the app reading the body
        assert headers["connection"] == "close"
    payload = json.loads(body)
    assert set(payload) == {"error", "message", "field"}
    assert payload["error"] == code
    assert payload["field"] == field
    assert all(word in payload["message"].lower() for word in words), payload["message"]


def test_the_service_serves_on_after_refusals(port):
    exchange(port, get(headers=f"X-Big: {'a' * 20_000}\r\n"), kept_alive=False)
    client = Client(f"http://127.0.0.1:{port}")
    try:
        response = client.post("/v1/score", {"candidates": ["item-0001", "item-0002"]})
        assert response.status == 200 and response.json()["ranking"]
    finally:
        client.close()
