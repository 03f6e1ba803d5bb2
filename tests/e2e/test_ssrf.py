"""URL input and webhooks reach only checked addresses, through every redirect and DNS change.

The loopback test server stands in for "the internet" and for "the inside": `_is_public` is
narrowed so that 127.0.0.1 counts as public and every other address (127.0.0.2 included,
which the server does not listen on) as private."""

from __future__ import annotations

import http.server
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from app import net

REAL_GETADDRINFO = socket.getaddrinfo


class Recorder(http.server.BaseHTTPRequestHandler):
    """/redirect?to=URL answers 302 to URL, /loop to itself; any other path serves the test
    audio."""

    audio = b""
    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802
        Recorder.seen.append((self.path, self.headers.get("host", "")))
        if self.path.startswith(("/redirect?to=", "/loop")):
            self.send_response(302)
            self.send_header("location", self.path.partition("=")[2] or "/loop")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-length", str(len(self.audio)))
        self.end_headers()
        self.wfile.write(self.audio)

    def log_message(self, *args):
        pass


@pytest.fixture
def origin(sample_wav) -> Iterator[int]:
    Recorder.audio, Recorder.seen = sample_wav.read_bytes(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    """Names → addresses handed out in turn (the last one repeats); 127.0.0.1 is 'public'."""
    table: dict[str, list[str]] = {}

    def resolve(host, port, *args, **kwargs):
        if host in table:
            answers = table[host]
            address = answers.pop(0) if len(answers) > 1 else answers[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 80))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(net, "_is_public", lambda a: a == ipaddress.ip_address("127.0.0.1"))
    return table


def _submit(client, url: str):
    return client.post("/speech-to-text-url?diarize=false&language=en", data={"url": url})


def test_a_loopback_url_is_refused_without_naming_the_address(client, origin):
    response = _submit(client, f"http://localhost:{origin}/a.wav")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_URL"
    assert "127.0.0.1" not in response.text and "::1" not in response.text
    assert Recorder.seen == []  # nothing was fetched


def test_a_redirect_to_an_inside_address_is_refused(client, origin, dns):
    dns["media.test"] = ["127.0.0.1"]
    inside = f"http://127.0.0.2:{origin}/secret"
    response = _submit(client, f"http://media.test:{origin}/redirect?to={inside}")
    assert response.status_code == 400 and response.json()["error"]["code"] == "BAD_URL"
    assert "127.0.0.2" not in response.text
    assert [path for path, _ in Recorder.seen] == [f"/redirect?to={inside}"]


def test_the_connection_goes_to_the_checked_address_not_a_rebound_one(client, origin, dns):
    """DNS rebinding: the name answers a public address to the check, then an inside one.
    The download connects to the address that was checked (the Host header keeps the name)."""
    dns["rebind.test"] = ["127.0.0.1", "127.0.0.2"]
    response = _submit(client, f"http://rebind.test:{origin}/a.wav")
    assert response.status_code == 200, response.text
    client.post(f"/task/{response.json()['identifier']}/cancel")  # the download is the test
    assert Recorder.seen == [("/a.wav", f"rebind.test:{origin}")]
    assert dns["rebind.test"] == ["127.0.0.2"]  # resolved once, by the check


def test_a_redirect_is_followed_to_a_public_address(client, origin, dns):
    dns["a.test"], dns["b.test"] = ["127.0.0.1"], ["127.0.0.1"]
    target = f"http://b.test:{origin}/b.wav"
    response = _submit(client, f"http://a.test:{origin}/redirect?to={target}")
    assert response.status_code == 200, response.text
    client.post(f"/task/{response.json()['identifier']}/cancel")
    assert Recorder.seen[-1] == ("/b.wav", f"b.test:{origin}")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.wav", "http://[", "http://a:abc/x"]
)
def test_other_schemes_and_malformed_urls_are_refused_at_submission(client, url):
    for response in (
        _submit(client, url),
        client.post(f"/service/combine?callback_url={url}"),
    ):
        assert response.status_code == 422, (url, response.text)
        assert "url" in response.text


def test_special_addresses_are_refused_without_naming_them(client):
    response = _submit(client, "http://[::ffff:169.254.169.254]/")
    assert response.status_code == 400 and response.json()["error"]["code"] == "BAD_URL"
    assert "169.254" not in response.text


def _hooked_task_webhook(client, port: str) -> dict:
    """Submit a combine task whose callback_url is http://hooks.test:PORT/done; once it has
    completed, its webhook's status."""
    from tests.e2e.conftest import wait

    turns = b'[{"speaker": "A", "start": 0, "end": 1}]'
    aligned = b'{"segments": [{"start": 0, "end": 1, "text": "hi"}], "language": "en"}'
    response = client.post(
        f"/service/combine?callback_url=http://hooks.test:{port}/done",
        files={"aligned_transcript": ("a.json", aligned), "diarization_result": ("d.json", turns)},
    )
    identifier = response.json()["identifier"]
    assert wait(client, identifier)["status"] == "completed"
    deadline = time.monotonic() + 30
    while not (webhook := client.get(f"/task/{identifier}").json()["metadata"]["webhook"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return webhook


def test_a_webhook_to_a_rebound_name_goes_to_the_checked_address(client, local_server, dns):
    port = local_server.url.rsplit(":", 1)[1]
    # checked at submission, checked at delivery, then rebound: the post goes where checked
    dns["hooks.test"] = ["127.0.0.1", "127.0.0.1", "127.0.0.2"]
    assert _hooked_task_webhook(client, port)["status"] == "delivered"
    headers = {k.lower(): v for k, v in local_server.posts[0][0].items()}
    assert len(local_server.posts) == 1 and headers["host"] == f"hooks.test:{port}"


def test_a_webhook_whose_name_turned_private_after_submission_is_refused_at_delivery(
    client, local_server, dns
):
    port = local_server.url.rsplit(":", 1)[1]
    dns["hooks.test"] = ["127.0.0.1", "127.0.0.2"]  # public when submitted, private when due
    webhook = _hooked_task_webhook(client, port)
    assert webhook["status"] == "refused" and "private" in webhook["error"]
    assert local_server.posts == []


def test_a_redirect_loop_ends_with_a_clear_error(client, origin, dns):
    dns["loop.test"] = ["127.0.0.1"]
    response = _submit(client, f"http://loop.test:{origin}/loop")
    assert response.status_code == 400 and "redirect" in response.json()["detail"]
    assert len(Recorder.seen) == 5  # the first request and four redirects, then it stops
