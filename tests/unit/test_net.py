import pytest

from app.net import BlockedURL, check_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8000/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://2130706433/",  # 127.0.0.1 written as one number
        "http://0x7f.1/",  # and in hex, shortened
        "http://127.1/",
        "http://localhost./",
        "http://user@127.0.0.1:80@example.com/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://198.18.0.1/",  # benchmarking
        "http://240.0.0.1/",  # reserved
        "http://255.255.255.255/",
        "http://[::]/",
        "http://[fc00::1]/",  # unique local
        "http://[ff02::1]/",  # multicast
        "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped 169.254.169.254 (cloud metadata)
        "http://[64:ff9b:1::7f00:1]/",  # local-use NAT64
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/",  # Teredo, client 10.0.0.1
    ],
)
def test_private_and_special_addresses_are_blocked(url):
    with pytest.raises(BlockedURL) as err:
        check_url(url)
    assert "127.0.0.1" not in str(err.value) and "10." not in str(err.value)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.wav", "file:///etc/passwd", "gopher://x/", "http:///nohost"]
)
def test_only_http_and_https_are_accepted(url):
    with pytest.raises(BlockedURL, match="http"):
        check_url(url)


def test_public_literal_addresses_pass_and_private_ones_can_be_allowed():
    check_url("https://93.184.215.14/file.mp3")
    check_url("http://[2606:4700::1111]/")
    check_url("http://127.0.0.1:9/", allow_private=True)


def test_the_address_to_connect_to_is_the_checked_one(monkeypatch):
    import socket

    import httpx

    from app.net import pinned_request

    calls = []

    def resolve(host, port, *_, **__):
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with httpx.Client() as client:
        request = pinned_request(client, "GET", "https://media.example.com:8443/a.mp3?x=1", False)
    assert calls == ["media.example.com"]
    assert str(request.url) == "https://93.184.215.14:8443/a.mp3?x=1"
    assert request.headers["host"] == "media.example.com:8443"
    assert request.extensions["sni_hostname"] == "media.example.com"  # TLS checks the name


def test_secrets_are_redacted_from_urls_and_access_logs():
    import logging

    from app.net import RedactAccessLog, redact_url

    url = "https://u:pw@s3.example.com/b/a.wav?X-Amz-Signature=abc&X-Amz-Credential=k&v=1"
    shown = redact_url(url)
    assert "pw" not in shown and "abc" not in shown and "=k" not in shown and "v=1" in shown
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        (
            "1.2.3.4:5",
            "POST",
            "/speech-to-text?callback_url=https%3A%2F%2Fh%2F%3Ftoken%3Dsecret1&language=en",
            "1.1",
            200,
        ),
        None,
    )
    RedactAccessLog().filter(record)
    line = record.getMessage()
    assert "secret1" not in line and "language=en" in line and "callback_url" in line
