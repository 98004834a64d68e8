"""What the per-client signup limit counts as one client."""

import pytest

from signup.ratelimit import client_key


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("192.0.2.7", "ip:192.0.2.7"),
        ("10.0.0.1", "ip:10.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2::", "ip:2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff::1", "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "ip:2001:db8:1:3::/64"),
        ("fe80::1%eth0", "ip:fe80::/64"),
        ("::1", "ip:::/64"),
        # A dual-stack listener reports IPv4 peers this way; each is its own client.
        ("::ffff:192.0.2.7", "ip:192.0.2.7"),
        ("::ffff:198.51.100.1", "ip:198.51.100.1"),
        ("::FFFF:c000:0207", "ip:192.0.2.7"),
    ],
)
def test_client_key(peer: str, key: str) -> None:
    assert client_key(peer) == key


def test_ipv4_mapped_peers_do_not_share_a_bucket() -> None:
    keys = {client_key(f"::ffff:203.0.113.{i}") for i in range(256)}
    assert len(keys) == 256
    assert client_key("::ffff:203.0.113.9") == client_key("203.0.113.9")


@pytest.mark.parametrize(
    "peer",
    [
        "",
        "unknown",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        " 1.2.3.4",
        "::g",
        "1.2.3.4:80",
        "x" * 10_000,
    ],
)
def test_what_is_not_an_address_shares_one_key(peer: str) -> None:
    # Only a misconfigured proxy header or a Unix socket gets here.
    assert client_key(peer) == "ip:unknown"
