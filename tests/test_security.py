"""The auth policy and the rate limiter as pure functions (the endpoints' use of them is
tested through the server in test_access.py)."""

from __future__ import annotations

import pytest

from voxloop.server.limits import RateLimiter
from voxloop.server.security import Auth, AuthError, bearer, is_loopback, token_from


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def auth(**kw) -> Auth:
    return Auth(enabled=True, api_keys=["key-one", "key-two"], secret=b"s" * 32, **kw)


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("192.168.1.5", False), ("example.com", False), ("", False)],
)  # fmt: skip
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_api_keys():
    a = auth()
    a.check_api_key("key-two")
    for bad in (None, "", "key-thre", "key-one "):
        with pytest.raises(AuthError) as err:
            a.check_api_key(bad)
        assert err.value.code == 4401 and err.value.http_status == 401


def test_a_token_works_until_it_expires():
    clock = Clock()
    a = auth(ttl_s=60, clock=clock)
    token = a.mint("u1")
    assert token.expires_at == clock.t + 60
    a.check_token(token.value)
    clock.t += 59.9
    a.check_token(token.value)
    clock.t += 0.2
    with pytest.raises(AuthError, match="expired"):
        a.check_token(token.value)


def test_a_token_asks_for_no_more_than_the_configured_lifetime():
    clock = Clock()
    assert auth(ttl_s=60, clock=clock).mint("u1", ttl_s=3600).expires_at == clock.t + 60


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],  # signature
        lambda t: "v2" + t[2:],  # version
        lambda t: t.replace(".", "", 1),  # shape
        lambda t: t.split(".")[0] + ".e30." + t.split(".")[2],  # payload swapped
        lambda t: "",
    ],
)
def test_forged_or_broken_tokens_are_refused(tamper):
    a = auth()
    with pytest.raises(AuthError) as err:
        a.check_token(tamper(a.mint("u1").value))
    assert err.value.code == 4401


def test_another_secret_means_another_server():
    token = auth().mint("u1").value
    other = Auth(enabled=True, api_keys=["k"], secret=b"t" * 32)
    with pytest.raises(AuthError, match="signature"):
        other.check_token(token)


def test_nothing_is_checked_when_auth_is_off():
    a = Auth(enabled=False)
    a.check_api_key(None)
    a.check_token(None)


def test_where_credentials_come_from():
    assert bearer("Bearer abc", None) == "abc"
    assert bearer(None, "xyz") == "xyz"
    assert token_from("q", []) == ("q", None)
    assert token_from(None, ["voxloop", "voxloop.token.v1.a.b"]) == ("v1.a.b", "voxloop")
    assert token_from(None, ["voxloop.token.v1.a.b"]) == ("v1.a.b", "voxloop.token.v1.a.b")


def test_rate_limiter_allows_bursts_then_the_rate():
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=4, clock=clock)
    assert [limiter.allow("1.2.3.4") for _ in range(5)] == [True] * 4 + [False]
    assert limiter.allow("5.6.7.8")  # another address has its own bucket
    clock.t += 0.5
    assert limiter.allow("1.2.3.4") and not limiter.allow("1.2.3.4")


def test_rate_limiter_memory_is_bounded():
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}")
        clock.t += 0.001
    assert len(limiter) <= 100


def test_a_zero_rate_turns_the_limit_off():
    limiter = RateLimiter(rate=0, burst=0)
    assert all(limiter.allow("x") for _ in range(1000))
