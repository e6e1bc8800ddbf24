"""Limits: a body over the cap is refused before it is read, too many form parts, the per-key
rate limit (shared by gateway replicas through Redis), the list page size cap."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.conftest import make_settings, start_gateway
from tests.reliability.conftest import report

CAP = 1024 * 1024


def _raw_request(port: int, head: bytes, body_chunks: int,
                 chunk: bytes) -> tuple[bytes, int, float]:
    """Send ``head`` then up to ``body_chunks`` chunks; stop when the server answers. Returns the
    answer, the body bytes sent, and the seconds to the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(True)
    started = time.monotonic()
    sent = 0
    answer = b""
    try:
        sock.sendall(head)
        sock.settimeout(0.01)
        for _ in range(body_chunks):
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                pass
            if answer:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(5)
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        sock.close()
    return answer, sent, time.monotonic() - started


@pytest.mark.parametrize("mode", ["embedded", "production"])
def test_body_over_the_cap_is_413_before_it_is_read(mode: str, tmp_path: Path,
                                                     request: pytest.FixtureRequest) -> None:
    server, gw = start_gateway(make_settings(mode, tmp_path, request, max_upload_bytes=CAP))
    port = server.port
    try:
        auth = f"Authorization: Bearer {gw.key}\r\n".encode()
        boundary = b"b0undary"
        base = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n" + auth +
                b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n")
        # Declared too large: answered from the header, before any body byte is sent.
        head = base + f"Content-Length: {100 * CAP}\r\n\r\n".encode()
        answer, sent, seconds = _raw_request(port, head, 0, b"")
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        declared = (sent, round(seconds, 3))
        # Chunked, no length: refused once the cap is crossed, long before 100 x cap is sent.
        head = base + b"Transfer-Encoding: chunked\r\n\r\n"
        part = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="files"; '
                b'filename="a.dcm"\r\n\r\n')
        block = b"\0" * 65536
        chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
        first = f"{len(part):x}\r\n".encode() + part + b"\r\n"
        answer, sent, seconds = _raw_request(port, head + first, 100 * CAP // len(block), chunk)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent < 20 * CAP, sent
        report(f"limits_body_cap[{mode}]", cap_bytes=CAP, declared_sent=declared[0],
               declared_answer_s=declared[1], chunked_sent_before_413=sent,
               chunked_answer_s=round(seconds, 3))
    finally:
        server.__exit__()


def test_too_many_parts_and_page_cap(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    server, gw = start_gateway(make_settings("production", tmp_path, request,
                                             max_form_fields=5, page_size_max=7))
    try:
        with gw.client() as client:
            files = [(f"f{i}", (None, "x")) for i in range(50)]
            response = client.post("/v1/jobs", files=files)
            assert (response.status_code, response.json()["code"]) == (400, "too_many_parts")
            for path in ("/v1/jobs", "/v1/worklist"):
                page = client.get(path, params={"limit": 10**9}).json()
                assert page["limit"] == 7, page
    finally:
        server.__exit__()


def _burst(client, count: int) -> list:  # type: ignore[no-untyped-def]
    return [client.get("/v1/jobs", params={"limit": 1}) for _ in range(count)]


@pytest.mark.parametrize("mode", ["embedded", "production"])
def test_rate_limit_429_with_retry_after(mode: str, tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    settings = make_settings(mode, tmp_path, request, rate_limit_per_s=2.0, rate_limit_burst=5)
    server, gw = start_gateway(settings)
    other = gw.new_key("hospital-b")
    try:
        with gw.client() as client, gw.client(key=other) as client_b:
            answers = _burst(client, 12)
            statuses = [r.status_code for r in answers]
            limited = [r for r in answers if r.status_code == 429]
            assert statuses[:5] == [200] * 5 and len(limited) >= 6, statuses
            for r in limited:
                assert r.json()["code"] == "rate_limited"
                assert int(r.headers["Retry-After"]) >= 1
            assert client_b.get("/v1/jobs").status_code == 200  # another key has its own bucket
            wait = int(limited[-1].headers["Retry-After"])
            time.sleep(wait)
            assert client.get("/v1/jobs").status_code == 200
        report(f"rate_limit[{mode}]", rate_per_s=2.0, burst=5, requests=12,
               answered_429=len(limited), retry_after_s=wait)
    finally:
        server.__exit__()


def test_rate_limit_is_shared_by_gateway_replicas(tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    settings = make_settings("production", tmp_path, request, rate_limit_per_s=1.0,
                             rate_limit_burst=6)
    server_a, gw_a = start_gateway(settings)
    server_b, gw_b = start_gateway(settings)  # a second replica on the same Redis
    try:
        with gw_a.client() as a, gw_b.client(key=gw_a.key) as b:
            first = [r.status_code for r in _burst(a, 6)]
            second = [r.status_code for r in _burst(b, 3)]
        assert first == [200] * 6 and second.count(429) >= 2, (first, second)
        report("rate_limit_replicas", replicas=2, burst=6, replica_a=first, replica_b=second)
    finally:
        server_b.__exit__()
        server_a.__exit__()
