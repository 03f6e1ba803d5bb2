"""HTTPS through a pinned connection: the request goes to the checked IP, and TLS still
verifies the certificate against the host name (a rebinding attacker's certificate fails)."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading

import httpx
import pytest

from app.net import pinned_request

REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def tls_server(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=media.test"]
        + ["-addext", "subjectAltName=DNS:media.test"],
        check=True,
        capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = self.headers["host"].encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_https_is_pinned_and_still_verified_against_the_name(tls_server, monkeypatch):
    port, cert = tls_server

    def resolve(host, port, *args, **kwargs):
        if host in ("media.test", "evil.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    trust = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(verify=trust) as client:
        request = pinned_request(client, "GET", f"https://media.test:{port}/a.wav", True)
        assert request.url.host == "127.0.0.1"
        response = client.send(request)
        assert response.status_code == 200 and response.text == f"media.test:{port}"
        # a name the certificate does not cover fails, though it reaches the same address
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.send(pinned_request(client, "GET", f"https://evil.test:{port}/", True))
