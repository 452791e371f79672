"""The portal's security parts on their own: cookie signatures, CSRF tokens, derived order
secrets, the sign-in limiter and password hashes."""

from __future__ import annotations

import pytest

from market import keys
from market.errors import MarketError, TooManyRequests
from market.web import limits, passwords, sessions

KEY = b"k" * 32


def test_a_cookie_reads_back_only_with_its_signature_and_key() -> None:
    cookie = sessions.sign(KEY, "abc")
    assert sessions.unsign(KEY, cookie) == "abc"
    assert sessions.unsign(b"other" * 8, cookie) is None
    assert sessions.unsign(KEY, "abd" + cookie[3:]) is None
    assert sessions.unsign(KEY, cookie[:-1]) is None
    assert sessions.unsign(KEY, "abc") is None
    assert sessions.unsign(KEY, None) is None


def test_a_csrf_token_belongs_to_one_session_and_key() -> None:
    token = sessions.csrf_token(KEY, "s1")
    assert sessions.csrf_ok(KEY, "s1", token)
    assert not sessions.csrf_ok(KEY, "s2", token)
    assert not sessions.csrf_ok(b"x" * 32, "s1", token)
    assert not sessions.csrf_ok(KEY, None, token)


def test_an_order_secret_is_a_valid_secret_and_differs_per_order() -> None:
    from cpushare.order import SECRET

    one, two = keys.order_secret(KEY, "o-1"), keys.order_secret(KEY, "o-2")
    assert SECRET.fullmatch(one) and one != two
    assert one != sessions.csrf_token(KEY, "o-1")  # each use has a purpose of its own


def test_the_limiter_allows_a_burst_then_one_try_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    limiter = limits.LoginLimiter()
    for _ in range(limits.BURST):
        limiter.take("account:ada", "address:1")
    with pytest.raises(TooManyRequests):
        limiter.take("account:ada", "address:2")
    # The refused try spent nothing: address 2 still has its whole burst.
    limiter.take("account:bob", "address:2")
    now[0] += limits.EVERY_SECONDS
    limiter.take("account:ada", "address:3")
    with pytest.raises(TooManyRequests):
        limiter.take("account:ada", "address:3")


def test_passwords_are_salted_and_checked() -> None:
    stored = passwords.hash_password("a long password")
    assert stored != passwords.hash_password("a long password")
    assert passwords.verify("a long password", stored)
    assert not passwords.verify("a long passworD", stored)
    assert not passwords.verify("a long password", None)
    with pytest.raises(MarketError, match="10 to 1024 characters"):
        passwords.check_new("short")
