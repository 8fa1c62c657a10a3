"""Socket-level abuse of a real `promptsvc dev`: bodies that lie about their size, huge headers,
trailing-slash paths, and hostile WebSocket frames. Each gets a 4xx (or a clean close), the server
keeps answering, and nothing is stored."""

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import ADMIN_KEY, DevServer, call, dev_server

WAIT = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with dev_server(env={"BODY_READ_SECONDS": "1"}) as started:
        yield started


def address(server: DevServer) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (read until the server closes or the body ends)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def still_serving(server: DevServer) -> None:
    response = call(server, ADMIN_KEY, "GET", "/prompt-svc/models")
    assert response.status_code == 200, response.text


def prompt_count(server: DevServer) -> int:
    response = call(server, ADMIN_KEY, "POST", "/prompt-svc/prompts", {"query": {"count": True}})
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


def test_a_chunked_body_of_20_mb_is_413_and_stores_nothing(server: DevServer) -> None:
    before = prompt_count(server)
    sock = socket.create_connection(address(server), timeout=WAIT)
    head = (
        "POST /prompt-svc/prompt HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sock.sendall(head.encode())

    def send_body() -> None:
        piece = b"x" * (1024 * 1024)
        try:
            sock.sendall(b'c\r\n{"prompt": "\r\n')
            for _ in range(20):
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sock.sendall(b'2\r\n"}\r\n0\r\n\r\n')
        except OSError:
            pass  # the server answered and closed before the body ended: what should happen

    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    with sock:
        status, headers, body = read_response(sock)
    sender.join(WAIT)

    assert status == 413
    assert "larger than 1048576 bytes" in json.loads(body)["error"]
    assert headers.get("connection") == "close"
    assert prompt_count(server) == before
    still_serving(server)


def test_a_content_length_that_promises_more_than_is_sent_is_408(server: DevServer) -> None:
    before = prompt_count(server)
    with socket.create_connection(address(server), timeout=WAIT) as sock:
        sock.sendall(
            (
                "POST /prompt-svc/prompt HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: 1000\r\n\r\n"
                '{"prompt": "hi"}'
            ).encode()
        )  # and then nothing more, with the socket left open
        status, _, body = read_response(sock)

    assert status == 408
    assert "not received within 1 s" in json.loads(body)["error"]
    assert prompt_count(server) == before
    still_serving(server)


def test_a_content_length_that_promises_less_than_is_sent_ends_cleanly(server: DevServer) -> None:
    with socket.create_connection(address(server), timeout=WAIT) as sock:
        sock.sendall(
            (
                "POST /prompt-svc/prompts HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: 2\r\n\r\n"
                "{}" + "garbage that is no request line\r\n\r\n"
            ).encode()
        )
        first, _, _ = read_response(sock)
        try:  # the rest, read as a next request: refused (400) or the connection closed
            second, _, _ = read_response(sock)
        except (OSError, IndexError, ValueError):
            second = 0  # closed without a response: a clean close

    assert first == 200
    assert second in (400, 0)
    still_serving(server)


def test_a_200_kb_header_is_refused_and_the_server_keeps_serving(server: DevServer) -> None:
    with socket.create_connection(address(server), timeout=WAIT) as sock:
        with contextlib.suppress(OSError):  # closed while we were still sending: a clean close
            sock.sendall(
                (
                    "GET /prompt-svc/models HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {ADMIN_KEY}\r\nX-Big: {'a' * 200 * 1024}\r\n\r\n"
                ).encode()
            )
        try:
            status, _, _ = read_response(sock)
        except (OSError, IndexError, ValueError):
            status = 0  # closed without a response

    assert status == 0 or 400 <= status < 500
    still_serving(server)


@pytest.mark.parametrize("path", ["/prompt-svc/models/", "/v2/prompts/"])
def test_a_trailing_slash_is_never_a_redirect(server: DevServer, path: str) -> None:
    with socket.create_connection(address(server), timeout=WAIT) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode())
        status, headers, _ = read_response(sock)
    assert status == 401
    assert "location" not in headers

    response = call(server, ADMIN_KEY, "GET", path)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["message" if path.startswith("/v2") else "error"] == "no such route"


# -- the WebSocket API: hostile frames get the documented error frame, the socket stays open --------


def frame(sock: Any) -> dict[str, Any]:
    return json.loads(sock.recv(timeout=WAIT))


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("{}", "no action"),
        ("[" * 10_000 + "]" * 10_000, "nested more than 32 levels"),
        ('{"action": "subscribe", "threadId": "t", "x": ' + "[" * 40 + "]" * 40 + "}", "nested more than 32"),
        ('{"action": "subscribe", "threadId": "t", "after": 1' + "0" * 5000 + "}", "more than 20 digits"),
        (json.dumps({"action": "subscribe", "threadId": "t", "after": 2**64}), "after must be at most"),
        ('{"action": "ping", "x": "\\ud800"}', "lone UTF-16 surrogate"),
    ],
    ids=["empty", "deep", "deep-in-subscribe", "huge-int", "after-past-64-bits", "surrogate"],
)
def test_a_hostile_frame_gets_an_error_frame_and_the_socket_stays_open(
    server: DevServer, message: str, problem: str
) -> None:
    with connect(server.ws_url + f"?token={ADMIN_KEY}", open_timeout=WAIT) as sock:
        sock.send(message)
        error = frame(sock)
        assert error["type"] == "error", error
        assert problem in error["error"]
        assert "action" in error

        sock.send(json.dumps({"action": "ping"}))
        assert frame(sock) == {"type": "pong"}
