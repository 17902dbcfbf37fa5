"""`welcome.iceServers` (PROTOCOL §Calls): STUN/TURN, TURN REST credentials."""

import base64
import hashlib
import hmac

from hubbub.core.ice import ice_servers, turn_credentials
from hubbub.features.system import open_session
from hubbub.protocol.frames import IceServer
from tests.support.clock import FakeClock
from tests.support.node import make_node, payload, send

NOW_MS = 1_700_000_000_500
KNOWN_VECTOR = "TwqKCcbzejRFa1sgGqGS7SEzCGg="


def test_turn_username_is_expiry_colon_user() -> None:
    username, _ = turn_credentials("secret", "ann", NOW_MS, 3600)
    assert username == f"{1_700_000_000 + 3600}:ann"


def test_turn_password_is_base64_hmac_sha1_of_the_username() -> None:
    username, password = turn_credentials("secret", "ann", NOW_MS, 60)
    expected = base64.b64encode(hmac.new(b"secret", username.encode(), hashlib.sha1).digest())
    assert password == expected.decode()


def test_turn_credentials_differ_per_user() -> None:
    assert turn_credentials("s", "ann", NOW_MS, 60) != turn_credentials("s", "bob", NOW_MS, 60)


def test_no_stun_and_no_turn_means_no_ice_servers() -> None:
    assert ice_servers([], [], None, "ann", NOW_MS, 60) == []


def test_stun_servers_have_no_credentials() -> None:
    assert ice_servers(["stun:a", "stun:b"], [], "s", "ann", NOW_MS, 60) == [
        IceServer(urls=["stun:a", "stun:b"])]


def test_turn_servers_with_a_secret_carry_credentials() -> None:
    servers = ice_servers(["stun:a"], ["turn:t"], "s", "ann", NOW_MS, 60)
    username, credential = turn_credentials("s", "ann", NOW_MS, 60)
    assert servers[1] == IceServer(urls=["turn:t"], username=username, credential=credential)


def test_turn_servers_without_a_secret_carry_no_credentials() -> None:
    assert ice_servers([], ["turn:t"], None, "ann", NOW_MS, 60) == [IceServer(urls=["turn:t"])]


def test_turn_password_matches_a_known_vector() -> None:
    # Computed once, independently: printf '1700003600:ann' | openssl dgst -sha1 -hmac north
    #   -binary | base64
    assert turn_credentials("north", "ann", 1_700_000_000_999, 3600) == (
        "1700003600:ann", KNOWN_VECTOR)


def test_welcome_ice_servers_come_from_the_settings() -> None:
    node = make_node(FakeClock(NOW_MS), stun=["stun:stun.example.org"],
                     turn=["turn:turn.example.org:3478", "turns:turn.example.org:5349"],
                     turn_secret="sekrit", turn_ttl=600)
    effects = send(node, open_session(node), "auth", {"userId": "ann"})
    username = f"{NOW_MS // 1000 + 600}:ann"
    password = base64.b64encode(
        hmac.new(b"sekrit", username.encode(), hashlib.sha1).digest()).decode()
    assert payload(effects[0])["iceServers"] == [
        {"urls": ["stun:stun.example.org"]},
        {"urls": ["turn:turn.example.org:3478", "turns:turn.example.org:5349"],
         "username": username, "credential": password},
    ]


def test_welcome_has_no_ice_servers_by_default() -> None:
    node = make_node(FakeClock(NOW_MS))
    effects = send(node, open_session(node), "auth", {"userId": "ann"})
    assert payload(effects[0])["iceServers"] == []
