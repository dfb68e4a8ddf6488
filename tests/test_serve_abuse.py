"""`mnist-pipeline serve` attacked as an attacker would, on 127.0.0.1: floods of
decompression-bomb PNGs and of the largest drawings allowed, JPEGs, hundreds of slow and
idle connections, other sites' pages and DNS-rebound host names. Each attack is refused
or bounded, and a normal request is still answered while it goes on.

The time limits here are generous (what the server must never exceed, not how fast it
is): bench/serve.py measures the figures."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import pytest

from mnist_pipeline.serve import (
    BODIES_BYTES,
    DRAWING_DEADLINE_S,
    HEADERS_DEADLINE_S,
    HostPolicy,
    check_caller,
)
from mnist_pipeline.serving_inputs import BadRequest

from .helpers import project_env, run_command
from .project import Served, drawing_png, post, rss_mib, scan_bomb_jpeg, serving

pytestmark = pytest.mark.slow  # the trained project: a small pipeline run

NORMAL_LIMIT_S = (
    5.0  # a normal request during an attack: the server before this waited 15 s or more
)


@pytest.fixture(scope="module")
def server(trained_project) -> Iterator[Served]:
    """A server of its own (the ONNX runtime: it starts fast), so no attack here slows
    another test's requests."""
    with serving(trained_project, "--runtime", "onnx", env=project_env(trained_project)) as served:
        yield served


@pytest.fixture(scope="module")
def one_digit(trained_project) -> bytes:
    image = np.load(trained_project / "data/processed/test_images.npy")[:1]
    return json.dumps({"instances": image.tolist()}).encode()


def normal_request(server: Served, one_digit: bytes) -> float:
    """Seconds a one-digit predict takes; fails unless it is answered right."""
    status, answer, seconds = post(
        f"{server.url}/v1/models/mnist:predict", one_digit, "application/json", NORMAL_LIMIT_S
    )
    assert status == 200 and len(answer["predictions"]) == 1
    return seconds


def test_png_bombs_and_the_largest_drawings_are_bounded_in_time_and_memory(server, one_digit):
    """16 decompression bombs (7071x7071 RGBA, 409 MB decoded, from a 200 KB file) and 16
    of the largest drawings allowed, sent at once: the bombs are refused from their header,
    the drawings read or turned away (503) within the deadline, a normal request is
    answered meanwhile, and the server's memory (with its drawing readers) is as before."""
    bomb, largest = drawing_png(7071, 7071, "RGBA", ink=False), drawing_png(2048, 2048)
    url = f"{server.url}/api/digit"
    before = rss_mib(server.process.pid)
    with ThreadPoolExecutor(32) as pool:
        sent = [pool.submit(post, url, bomb, "image/png") for _ in range(16)]
        sent += [pool.submit(post, url, largest, "image/png") for _ in range(16)]
        during = [normal_request(server, one_digit) for _ in range(5)]
        answers = [future.result() for future in sent]
    for status, answer, _ in answers[:16]:
        assert status == 400 and answer["error"].startswith("image too large: 7071x7071"), answer
    for status, answer, seconds in answers[16:]:
        assert (status, answer.get("digit")) in {(200, 1), (503, None)}, answer
        assert seconds < DRAWING_DEADLINE_S + 3
    assert any(status == 200 for status, _, _ in answers[16:])  # not all turned away
    assert max(during) < NORMAL_LIMIT_S
    time.sleep(1)
    assert rss_mib(server.process.pid) < before + 100


def test_drawings_are_png_alone_and_a_jpeg_is_never_decoded(server):
    """A progressive JPEG whose scans repeat costs a decode of every pixel per scan (this
    one, seconds of CPU): the server takes PNG only, by Content-Type and by the bytes
    themselves, so it decodes none of it."""
    jpeg, url = scan_bomb_jpeg(), f"{server.url}/api/digit"
    status, answer, _ = post(url, jpeg, "image/jpeg")
    assert status == 415
    assert answer["error"] == "Content-Type image/jpeg: this endpoint takes image/png"
    status, answer, seconds = post(url, jpeg, "image/png")
    assert status == 400 and answer["error"] == "not a readable image: not a PNG file"
    assert seconds < NORMAL_LIMIT_S


def test_hundreds_of_slow_and_idle_connections_leave_the_server_answering(server, one_digit):
    """200 connections sending a header line a second (never finishing) and 100 that send
    nothing: a normal request is answered at once, and each slow one gets 408 and is
    closed once its headers are HEADERS_DEADLINE_S late, however steadily it trickles."""
    address = (urlsplit(server.url).hostname, urlsplit(server.url).port)
    idle = [socket.create_connection(address, timeout=10) for _ in range(100)]
    slow = [socket.create_connection(address, timeout=10) for _ in range(200)]
    try:
        for connection in slow:
            connection.sendall(b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert normal_request(server, one_digit) < NORMAL_LIMIT_S
        start = time.monotonic()
        for second in range(HEADERS_DEADLINE_S + 4):  # a header line a second from each
            for connection in slow:
                with contextlib.suppress(OSError):  # closed by the server: as it should be
                    connection.sendall(f"X-Slow-{second}: 1\r\n".encode())
            time.sleep(max(0.0, start + second + 1 - time.monotonic()))
        assert normal_request(server, one_digit) < NORMAL_LIMIT_S
        for connection in idle + slow:  # the idle ones too: their deadline runs from opening
            answer = b""
            while chunk := connection.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:80]
            assert answer.endswith(
                b'{"error": "the request\'s headers took over %d s to arrive"}' % HEADERS_DEADLINE_S
            )
    finally:
        for connection in idle + slow:
            connection.close()


def test_bodies_beyond_the_servers_room_are_refused_before_they_are_read(server):
    """Bodies the server is waiting for may hold 64 MiB in all (waitress buffers them in
    memory or temporary files): the 17th of 4 MB each, declared at once, is answered 503
    at once rather than read; once the others go, a body is read again."""
    address = (urlsplit(server.url).hostname, urlsplit(server.url).port)

    def declare(size: int) -> socket.socket:
        connection = socket.create_connection(address, timeout=10)
        connection.sendall(
            b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size
        )
        return connection

    waiting = [declare(4_000_000) for _ in range(BODIES_BYTES // 4_000_000)]
    try:
        time.sleep(0.5)  # all of them read and admitted
        refused, answer = declare(4_000_000), b""
        while chunk := refused.recv(4096):
            answer += chunk
        refused.close()
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), answer[:80]
        assert answer.endswith(
            b"busy: other requests' bodies are being read; try again in a moment\"}"
        )
    finally:
        for connection in waiting:
            connection.close()
    time.sleep(0.5)  # their room given back as they close
    again = declare(4_000_000)
    again.settimeout(1)
    with pytest.raises(TimeoutError):  # admitted: it waits for the body
        again.recv(1)
    again.close()


CALLERS = [  # (headers, body or None for a GET, status, the error's start)
    ({"Host": "attacker.example:8501"}, None, 421, "Host attacker.example:8501 is not this server"),
    ({"Host": "attacker.example"}, b"{}", 421, "Host attacker.example is not this server"),
    (
        {"Origin": "http://attacker.example"},
        b"{}",
        403,
        "a request from the page of http://attacker.example is refused",
    ),
    ({"Origin": "null"}, None, 403, "a request from the page of null is refused"),
    ({"Sec-Fetch-Site": "cross-site"}, b"{}", 403, "a cross-site request is refused"),
    (
        {"Content-Type": "text/plain"},
        b"{}",
        415,
        "Content-Type text/plain: this endpoint takes application/json",
    ),
    (
        {"Content-Type": "", "Sec-Fetch-Mode": "no-cors"},
        b"{}",
        415,
        "Content-Type missing: this endpoint takes application/json",
    ),
]


@pytest.mark.parametrize(("headers", "body", "status", "message"), CALLERS)
def test_other_sites_pages_and_host_names_are_refused(server, headers, body, status, message):
    """What a web page elsewhere can make a browser send (a DNS-rebound host name, a
    cross-site fetch or form, a text/plain body) gets its status and one line, never an
    answer; the same request from the server's own page is answered."""
    path = "/v1/models/mnist:predict" if body else "/v1/models/mnist"
    request = urllib.request.Request(server.url + path, body, headers)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    with refused.value as error:
        assert error.code == status
        assert json.loads(error.read())["error"].startswith(message)


def test_its_own_page_and_loopback_names_are_answered(server, one_digit):
    port = urlsplit(server.url).port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
        origin = {"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"}
        request = urllib.request.Request(
            f"{server.url}/v1/models/mnist:predict",
            one_digit,
            {"Host": host, "Content-Type": "application/json", **origin},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200, host
    # A client that is no browser and sends no Content-Type (tritonclient, requests' data=)
    connection = http.client.HTTPConnection(urlsplit(server.url).hostname, port, timeout=30)
    connection.request("POST", "/v1/models/mnist:predict", one_digit)
    assert connection.getresponse().status == 200
    connection.close()


HOSTS = [  # (Host header, answered on loopback alone, with --allow-remote --allow-host digits.lan)
    ("localhost:8501", True, True),
    ("LOCALHOST.:8501", True, True),
    ("127.0.0.1", True, True),
    ("[::1]:8501", True, True),
    ("192.168.1.20:8501", False, True),
    ("[fe80::1]:8501", False, True),
    ("digits.lan:8501", False, True),
    ("rebound.attacker.example:8501", False, False),
    ("localhost.attacker.example", False, False),
]


@pytest.mark.parametrize(("host", "on_loopback", "remote"), HOSTS)
def test_a_host_name_an_attackers_dns_could_point_here_is_never_answered(host, on_loopback, remote):
    """A DNS-rebinding page sends its own name as Host: refused bound to loopback, and
    bound to another interface too, where IP addresses and --allow-host names pass."""
    remote_policy = HostPolicy(remote=True, names=frozenset({"digits.lan"}))
    for allowed, policy in ((on_loopback, HostPolicy()), (remote, remote_policy)):
        environ = {"HTTP_HOST": host, "HTTP_ORIGIN": f"https://{host}"}  # its own page, TLS
        if allowed:
            check_caller(environ, policy)
        else:
            with pytest.raises(BadRequest) as refused:
                check_caller(environ, policy)
            assert refused.value.status == "421 Misdirected Request"


def test_another_interface_needs_allow_remote_and_warns(trained_project, server):
    refused = run_command(trained_project, "serve", "--host", "0.0.0.0", "--runtime", "onnx")
    assert refused.returncode == 1
    assert refused.stderr == (
        "mnist-pipeline serve: error: --host 0.0.0.0 serves other machines too, with no "
        "authentication: add --allow-remote to mean it\n"
    )
    port = str(urlsplit(server.url).port)  # taken: so it warns, then cannot listen
    warned = run_command(
        trained_project,
        "serve",
        "--host",
        "0.0.0.0",
        "--allow-remote",
        "--port",
        port,
        "--runtime",
        "onnx",
    )
    assert warned.returncode == 1
    assert warned.stderr.splitlines() == [
        "mnist-pipeline serve: warning: serving on 0.0.0.0: every machine that reaches this "
        "one can use the model, without authentication",
        f"mnist-pipeline serve: error: cannot listen on 0.0.0.0:{port}: Address already in use; "
        "pick another --port",
    ]
