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
