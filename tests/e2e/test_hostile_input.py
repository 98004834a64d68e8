"""Hostile requests against a real uvicorn, over raw sockets where an HTTP client would refuse.

Every answer must be a 4xx (or a clean 2xx), never a 5xx, and the server log
must hold no traceback. What is Django's alone is tested with its test client
in tests/asgi_project/ and tests/signup/.
"""

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.service import ServiceProcess, base_env, migrate
from tests.support.smtp_server import SMTPTestServer
from tests.support.waiting import clear_of_a_rate_window_edge

BODY_TIMEOUT = 1  # REQUEST_BODY_TIMEOUT for these services, in seconds.
CSRF_COOKIE = b"csrftoken=abcdefghijklmnopqrstuvwxyzABCDEF"
PATHS = [b"/signup/", b"/healthz", b"/account/set-password/MQ/set-password/", b"/no-such-page"]


@dataclass
class Answer:
    status: int
    head: bytes
    body: bytes


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP/1.1 response: its body by Content-Length or chunked, as the server framed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += receive_more(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = [line.lower() for line in head.split(b"\r\n")[1:]]
    lengths = [
        int(line.split(b":", 1)[1]) for line in headers if line.startswith(b"content-length:")
    ]
    if lengths:
        while len(rest) < lengths[0]:
            rest += receive_more(sock)
        return Answer(int(head.split(b" ", 2)[1]), head, rest[: lengths[0]])
    body = b""
    while True:  # Chunked: size line, data, CRLF; a zero size ends it.
        while b"\r\n" not in rest:
            rest += receive_more(sock)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            rest += receive_more(sock)
        if size == 0:
            return Answer(int(head.split(b" ", 2)[1]), head, body)
        body, rest = body + rest[:size], rest[size + 2 :]


def receive_more(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise AssertionError("connection closed before the answer was complete")
    return chunk


def exchange(
    service: ServiceProcess, raw: bytes, *, timeout: float = 10, then_closed: bool = False
) -> Answer:
    """Send ``raw`` as it is on a fresh connection; the answer must come within ``timeout`` s.

    With ``then_closed``, the server must also close the connection after answering.
    """
    with socket.create_connection(("127.0.0.1", service.port), timeout=timeout) as sock:
        sock.sendall(raw)
        answer = read_answer(sock)
        if then_closed:
            assert sock.recv(1) == b"", "connection left open"
        return answer


def request(
    method: bytes, path: bytes, *headers: bytes, body: bytes = b"", host: bytes = b"127.0.0.1"
) -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: " + host, *headers]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def json_post(body: bytes, *headers: bytes) -> bytes:
    return request(b"POST", b"/signup/", b"Content-Type: application/json", *headers, body=body)


def chunked(*chunks: bytes, finished: bool = True) -> bytes:
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return encoded + (b"0\r\n\r\n" if finished else b"")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("hostile")
    smtp = SMTPTestServer().start()
    env = base_env(
        f"sqlite:///{directory / 'db.sqlite3'}",
        smtp.port,
        REQUEST_BODY_TIMEOUT=str(BODY_TIMEOUT),
    )
    migrate(env)
    process = ServiceProcess(env, directory / "uvicorn.log").start()
    yield process
    process.stop()
    smtp.stop()


@pytest.fixture(autouse=True)
def no_server_error(service: ServiceProcess) -> Iterator[None]:
    before = len(service.log())
    yield
    added = service.log()[before:]
    assert "Traceback" not in added
    assert '" 500' not in added


# Body limits: answered before the body is read, on every path.


@pytest.mark.parametrize("path", PATHS)
def test_a_huge_declared_body_gets_413_before_a_byte_of_it_is_sent(
    service: ServiceProcess, path: bytes
) -> None:
    headers = request(
        b"POST", path, b"Content-Type: application/json", b"Content-Length: %d" % 10**10
    )
    answer = exchange(service, headers, then_closed=True)
    assert answer.status == 413
    assert answer.body == b'{"detail": "Request body too large."}'


def test_expect_100_continue_gets_the_413_instead_of_continue(service: ServiceProcess) -> None:
    raw = request(b"POST", b"/signup/", b"Expect: 100-continue", b"Content-Length: 1000000000")
    answer = exchange(service, raw)
    assert answer.status == 413
    assert b"100 Continue" not in answer.head


@pytest.mark.parametrize("path", PATHS)
def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    service: ServiceProcess, path: bytes
) -> None:
    # 64 KiB and one byte, and the body never ends: only the limit can answer.
    body = chunked(*[b"x" * 1024] * 64, b"x", finished=False)
    head = json_post(b"", b"Transfer-Encoding: chunked")
    assert exchange(service, head + body, then_closed=True).status == 413


def test_a_chunked_body_at_the_limit_is_read(service: ServiceProcess) -> None:
    email = b'{"email": "chunked@example.com"'
    body = chunked(email, b" " * (64 * 1024 - len(email) - 1), b"}")
    assert exchange(service, json_post(b"", b"Transfer-Encoding: chunked") + body).status == 201


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sent", [b"", b'{"email": '])
def test_a_body_that_stops_arriving_gets_408(
    service: ServiceProcess, path: bytes, sent: bytes
) -> None:
    head = request(b"POST", path, b"Content-Length: 100")
    answer = exchange(service, head + sent, timeout=BODY_TIMEOUT + 5, then_closed=True)
    assert answer.status == 408
    assert answer.body == b'{"detail": "Request body not received in time."}'


# Host validation: ALLOWED_HOSTS is 127.0.0.1 for this service.


@pytest.mark.parametrize("path", [*PATHS, b"/"])
@pytest.mark.parametrize(
    "host",
    [b"evil.example", b"127.0.0.1.evil.example", b"127.0.0.1@evil.example", b"[::1]", b"\xff",
     b"a" * 10_000, b"localhost"],
)  # fmt: skip
def test_a_host_not_allowed_gets_400_on_every_path(
    service: ServiceProcess, path: bytes, host: bytes
) -> None:
    answer = exchange(service, request(b"GET", path, host=host))
    assert answer.status == 400
    assert answer.body == b'{"detail": "Invalid Host header."}'


def test_a_refused_host_is_logged_in_one_short_line(service: ServiceProcess) -> None:
    before = len(service.log())
    assert exchange(service, request(b"GET", b"/healthz", host=b"b" * 10_000)).status == 400
    (line,) = [line for line in service.log()[before:].splitlines() if "DisallowedHost" in line]
    assert "Invalid HTTP_HOST header: 'bbbb" in line
    assert len(line) < 400


@pytest.mark.parametrize("host", [b"127.0.0.1", b"127.0.0.1:8000", b"127.0.0.1."])
def test_an_allowed_host_passes(service: ServiceProcess, host: bytes) -> None:
    assert exchange(service, request(b"GET", b"/healthz", host=host)).status == 200


def test_no_host_at_all_is_the_servers_own_address(service: ServiceProcess) -> None:
    answer = exchange(service, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert answer.status == 200


# Forms that Django cannot read, with a CSRF cookie so they are read: 400, not 500.

UNREADABLE_FORMS = [
    pytest.param(b"application/x-www-form-urlencoded; charset=utf-32", b"a=1", id="utf-32"),
    pytest.param(b"application/x-www-form-urlencoded; charset=iso-8859-1", b"a=1", id="latin-1"),
    pytest.param(b"multipart/form-data; boundary=\xff", b"--\xff\r\n", id="non-ascii-boundary"),
    pytest.param(b"multipart/form-data", b"--x\r\n", id="no-boundary"),
    pytest.param(
        b"application/x-www-form-urlencoded", b"&".join([b"f=1"] * 1001), id="1001-fields"
    ),
]


@pytest.mark.parametrize(("content_type", "body"), UNREADABLE_FORMS)
@pytest.mark.parametrize("path", PATHS)
def test_an_unreadable_form_gets_400_on_every_path(
    service: ServiceProcess, path: bytes, content_type: bytes, body: bytes
) -> None:
    headers = (b"Cookie: " + CSRF_COOKIE, b"Content-Type: " + content_type)
    answer = exchange(service, request(b"POST", path, *headers, body=body))
    assert answer.status == 400
    assert b"Malformed form data." in answer.body


# HEAD: uvicorn, not Django, leaves out the body.


@pytest.mark.parametrize("path", [b"/signup/", b"/healthz", b"/account/set-password/done/"])
def test_head_gets_the_headers_of_get_and_no_body(service: ServiceProcess, path: bytes) -> None:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(request(b"HEAD", path))
        data = b""
        while b"\r\n\r\n" not in data:
            data += receive_more(sock)
        head, _, rest = data.partition(b"\r\n\r\n")
        # The next answer on this connection starts right after the headers:
        # body bytes sent for the HEAD would be read as its status line.
        sock.sendall(request(b"GET", b"/healthz"))
        after = read_answer(sock)
    get = exchange(service, request(b"GET", path))
    assert (head.split(b" ", 2)[1], rest, after.status) == (b"200", b"", 200)
    assert get.status == 200 and get.body

    def names(head: bytes) -> set[bytes]:  # Framing aside: a GET's body comes chunked.
        names = {line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:]}
        return names - {b"transfer-encoding", b"content-length"}

    assert names(head) == names(get.head)


# Raw bytes and odd requests a browser never sends.

LENGTH_2 = b"Content-Length: 2"
CHUNKED = b"Transfer-Encoding: chunked"
SIGNUP = b'{"email": "odd@example.com"}'

ODD_REQUESTS = [
    pytest.param(request(b"GET", b"/signup/\xff"), 400, id="raw-non-ascii-path"),
    pytest.param(request(b"GET", b"/signup/%ff%fe"), 404, id="percent-encoded-non-utf-8-path"),
    pytest.param(request(b"GET", b"/signup/%00"), 404, id="nul-in-path"),
    pytest.param(request(b"GET", b"/../../etc/passwd"), 404, id="dot-dot-path"),
    pytest.param(
        request(b"GET", b"/account/set-password/%ff/%fe/"), 200, id="set-password-bad-uid"
    ),
    pytest.param(request(b"GET", b"/signup/?%ff=%fe&&=&a"), 200, id="junk-query"),
    pytest.param(request(b"GET", b"/healthz", b"User-Agent: \xff\xfe"), 200, id="non-ascii-header"),
    pytest.param(request(b"GET", b"/healthz", b"X-A: \x01"), 400, id="control-byte-header"),
    pytest.param(request(b"GET", b"/healthz", b"Host: evil.example"), 400, id="two-hosts"),
    pytest.param(request(b"GET", b"http://evil.example/healthz"), 200, id="absolute-form-target"),
    pytest.param(request(b"FOO", b"/signup/"), 400, id="unknown-method"),
    pytest.param(request(b"PUT", b"/signup/", body=b"{}"), 405, id="put"),
    pytest.param(json_post(b"", LENGTH_2, CHUNKED) + chunked(b"{}"), 400, id="length-and-chunked"),
    pytest.param(json_post(b"", LENGTH_2, b"Content-Length: 3") + b"{} ", 400, id="two-lengths"),
    pytest.param(json_post(b"", b"Content-Length: -1"), 400, id="negative-length"),
    pytest.param(json_post(b"", b"Content-Length: 0x2") + b"{}", 400, id="hex-length"),
    pytest.param(json_post(b"", CHUNKED) + b"zz\r\n{}\r\n0\r\n\r\n", 400, id="bad-chunk-size"),
    pytest.param(
        json_post(b"", CHUNKED) + b"%x;ext=x\r\n%s\r\n0\r\n\r\n" % (len(SIGNUP), SIGNUP),
        201,
        id="chunk-extension",
    ),
    pytest.param(json_post(b'{"email": "\xff@example.com"}'), 400, id="json-not-utf-8"),
    pytest.param(json_post(b"\xef\xbb\xbf" + SIGNUP.replace(b"odd", b"bom")), 201, id="json-bom"),
    pytest.param(json_post(b"[" * 10_000 + b"]" * 10_000), 400, id="json-10000-deep"),
    pytest.param(
        json_post(SIGNUP.replace(b"odd", b"dup")[:-1] + b', "email": "x"}'), 400, id="json-dup-keys"
    ),
    pytest.param(
        request(b"POST", b"/signup/", b"Content-Type: application/json; charset=\xff", body=SIGNUP),
        201,
        id="json-non-ascii-charset",
    ),
    pytest.param(request(b"POST", b"/signup/", body=SIGNUP), 415, id="no-content-type"),
    pytest.param(
        json_post(SIGNUP.replace(b"odd", b"ck"), b"Cookie: csrftoken=\xff\xfe; sessionid=\xfe\xff"),
        201,
        id="non-ascii-cookie",
    ),
    pytest.param(
        request(
            b"POST",
            b"/signup/",
            b"Cookie: " + CSRF_COOKIE,
            b"Content-Type: application/x-www-form-urlencoded",
            body=b"email=%zz%",
        ),
        403,
        id="form-bad-percent-encoding",
    ),
]


@pytest.mark.parametrize(("raw", "status"), ODD_REQUESTS)
def test_odd_requests_get_a_4xx_or_a_clean_answer(
    service: ServiceProcess, raw: bytes, status: int
) -> None:
    assert exchange(service, raw).status == status


# The rate limit behind a proxy: uvicorn takes the client from X-Forwarded-For
# when the peer is in FORWARDED_ALLOW_IPS (127.0.0.1 by default).


def test_ipv4_mapped_clients_are_limited_one_by_one(tmp_path: Path) -> None:
    smtp = SMTPTestServer().start()
    env = base_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", smtp.port, SIGNUP_RATE_PER_IP="2/m")
    migrate(env)
    limited = ServiceProcess(env, tmp_path / "uvicorn.log").start()
    try:
        clear_of_a_rate_window_edge()

        def sign_up(client: str, email: str) -> int:
            response = httpx.post(
                f"{limited.url}/signup/",
                json={"email": email},
                headers={"X-Forwarded-For": client},
                timeout=10,
            )
            return response.status_code

        first = [sign_up("::ffff:192.0.2.1", f"a{i}@example.com") for i in range(3)]
        assert first == [201, 201, 429]
        assert sign_up("192.0.2.1", "same-client@example.com") == 429
        assert sign_up("::ffff:192.0.2.2", "b@example.com") == 201
        assert sign_up("2001:db8::1", "c@example.com") == 201
    finally:
        limited.stop()
        smtp.stop()
