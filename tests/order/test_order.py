"""The `.cpu` order format: parsing, every problem named, rendering round trip, fuzzing."""

from __future__ import annotations

import string
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpushare import order as order_module
from cpushare.order import (
    OrderError,
    SellOrder,
    cert_pin,
    endpoint,
    parse_order,
    parse_order_bytes,
    render_order,
    url_problems,
)
from market.tls import pem_sha256, self_signed


def test_valid_order_reads_every_field(good: str) -> None:
    order = parse_order(good)
    assert order == SellOrder(
        market_url="https://market.example.org:8443",
        order_id="o-1234abcd",
        secret="s3cret-s3cret-s3cret-s3cret",
        account="libcaca",
        cert_sha256="ab" * 32,
        nice=19,
        max_memory_mb=128,
        max_cpu_seconds=30,
    )
    assert order.max_memory_bytes == 128 << 20


def test_defaults_for_seller_section(good: str) -> None:
    text = good.split("[seller]")[0]
    order = parse_order(text)
    assert (order.nice, order.max_memory_mb, order.max_cpu_seconds) == (19, 256, 60)


def test_pin_with_colons_and_capitals_is_normalized(good: str) -> None:
    pin = ":".join(["AB"] * 32)
    assert parse_order(good.replace("ab" * 32, pin)).cert_sha256 == "ab" * 32


def test_every_problem_is_named() -> None:
    bad = """\
format = 2
colour = "blue"

[market]
url = "http://market.example.org"

[order]
id = "x"
account = "Libcaca!"

[seller]
nice = -1
max_memory_mb = "lots"
"""
    with pytest.raises(OrderError) as caught:
        parse_order(bad)
    text = str(caught.value)
    for needle in (
        "format 2 is not supported",
        "unknown key 'colour'",
        "plain http on a non-loopback host",
        "order.id 'x' is malformed",
        "order.secret is missing",
        "order.account 'Libcaca!' is malformed",
        "seller.nice is -1",
        "seller.max_memory_mb must be int, not str",
    ):
        assert needle in text
    assert len(caught.value.problems) == 8


def test_secret_is_not_echoed_in_errors(good: str) -> None:
    with pytest.raises(OrderError) as caught:
        parse_order(good.replace("s3cret-s3cret-s3cret-s3cret", "short'secret"))
    assert "short'secret" not in str(caught.value)
    assert "order.secret is malformed" in str(caught.value)


def test_https_needs_a_pin_and_http_only_on_loopback(good: str) -> None:
    no_pin = good.replace(f'cert_sha256 = "{"ab" * 32}"', "")
    with pytest.raises(OrderError, match=r"needs market\.cert_sha256 or market\.ca_pem"):
        parse_order(no_pin)
    loopback = no_pin.replace("https://market.example.org:8443", "http://127.0.0.1:8080")
    assert parse_order(loopback).market_url == "http://127.0.0.1:8080"


def test_bad_pem_and_two_trust_anchors_are_refused(good: str) -> None:
    both = good.replace("[order]", 'ca_pem = "-----BEGIN CERTIFICATE-----\\nnope\\n"\n\n[order]')
    with pytest.raises(OrderError) as caught:
        parse_order(both)
    assert "market.ca_pem is not a usable PEM certificate" in str(caught.value)
    assert "both set" in str(caught.value)


def test_not_toml_and_not_utf8() -> None:
    with pytest.raises(OrderError, match="not valid TOML"):
        parse_order("format = = 1")
    with pytest.raises(OrderError, match="not UTF-8"):
        parse_order_bytes(b"format = 1\n\xff")
    with pytest.raises(OrderError, match="larger than"):
        parse_order_bytes(b"#" * (65 << 10))


def test_rendered_order_parses_back_identical(good: str) -> None:
    order = parse_order(good)
    text = render_order(order)
    assert parse_order(text) == order
    assert "nice = 19" in text


def test_render_refuses_an_invalid_order() -> None:
    order = SellOrder(market_url="https://m.example.org", order_id="o-1", secret="x", account="a")
    with pytest.raises(OrderError, match=r"order\.secret is malformed"):
        render_order(order)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_arbitrary_text_gives_an_order_or_named_problems(text: str) -> None:
    try:
        parse_order(text)
    except OrderError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=40),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
)
_ident = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "format": st.one_of(st.just(1), _scalars),
            "market": st.dictionaries(
                st.sampled_from(["url", "cert_sha256", "ca_pem", "x"]), _scalars
            ),
            "order": st.dictionaries(st.sampled_from(["id", "secret", "account"]), _scalars),
            "seller": st.dictionaries(
                st.sampled_from(["nice", "max_memory_mb", "max_cpu_seconds"]), _scalars
            ),
        },
    ),
    st.dictionaries(_ident, _scalars, max_size=2),
)
def test_fuzz_structured_documents(doc: dict[str, object], extra: dict[str, object]) -> None:
    from cpushare.order import order_from_toml

    try:
        order = order_from_toml({**extra, **doc})
    except OrderError as exc:
        assert exc.problems
    else:
        assert parse_order(render_order(order)) == order


_CA_PEM = self_signed(["market.example.org"])[0].decode()
_safe = string.ascii_letters + string.digits + "-_"
_host = st.sampled_from(["market.example.org", "m.example", "[::1]", "127.0.0.1", "localhost"])
_port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
# Quotes, backslashes, a tab and non-ASCII: what the renderer must escape or keep as is.
_path = st.text(alphabet=string.ascii_lowercase + '/-é"\\\t', max_size=12).map(lambda p: "/" + p)
_pins = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)


@st.composite
def sell_orders(draw: st.DrawFn) -> SellOrder:
    """Valid orders of every shape: https pinned or with a CA, plain http on loopback."""
    trust = draw(st.sampled_from(["pin", "ca", "loopback"]))
    host = "127.0.0.1" if trust == "loopback" else draw(_host)
    scheme = "http" if trust == "loopback" else "https"
    return SellOrder(
        market_url=f"{scheme}://{host}{draw(_port)}{draw(_path)}".rstrip("/"),
        order_id=draw(st.text(alphabet=_safe, min_size=4, max_size=64)),
        secret=draw(st.text(alphabet=_safe, min_size=16, max_size=128)),
        account=draw(st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,63}", fullmatch=True)),
        cert_sha256=draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
        if trust == "pin"
        else None,
        ca_pem=_CA_PEM if trust == "ca" else None,
        nice=draw(st.integers(0, 19)),
        max_memory_mb=draw(st.integers(1, 64 << 10)),
        max_cpu_seconds=draw(st.integers(1, 7 * 24 * 3600)),
    )


@settings(max_examples=300, deadline=None)
@given(sell_orders())
def test_render_then_parse_gives_the_same_order(order: SellOrder) -> None:
    assert parse_order(render_order(order)) == order


def test_the_pin_is_the_sha256_of_the_certificates_der() -> None:
    # The market computes its pin with `cryptography`; the guest's must agree with it.
    assert cert_pin(_CA_PEM) == pem_sha256(_CA_PEM.encode())
    with pytest.raises(ValueError):
        cert_pin("not a certificate")


@pytest.mark.parametrize(
    "url",
    [
        "https://market.example.org:8443",
        "https://Market.Example.ORG/cpushare/",
        "HTTPS://10.0.2.100:8443/a/b",
        "http://127.0.0.1:8080",
        "http://localhost",
        "https://[2001:db8::1]:8443/api",
        "http://[::1]/",
        "https://market.example.org:443",
        " https://market.example.org/a\tb\n",
    ],
)
def test_a_seller_splits_a_valid_url_as_urllib_does(url: str) -> None:
    # The sellers split the market's URL without urllib.parse (it would stay in the live
    # system's memory): the same parts for every URL an order may carry.
    assert url_problems(url) == []
    parts = urllib.parse.urlsplit(url)
    assert endpoint(url) == (parts.scheme, parts.hostname, parts.port, parts.path)


_odd = st.text(alphabet=string.ascii_letters + "[]:/?#@%\t\n é0189", max_size=10)


@given(st.sampled_from([" https", "HTTPS", "http", "\thttps"]), _host, _odd, _odd)
def test_endpoint_agrees_with_urllib_or_the_url_is_refused(
    scheme: str, host: str, port: str, path: str
) -> None:
    url = f"{scheme}://{host}{port}{path}"
    if url_problems(url) == []:
        parts = urllib.parse.urlsplit(url)
        assert endpoint(url) == (parts.scheme, parts.hostname, parts.port, parts.path)


# Market URLs, most of them plain, some with a character, a port or a scheme that is not.
_plain_host = st.text(alphabet="abz0189.-", min_size=1, max_size=10)
_plainish_host = st.one_of(
    _plain_host, _plain_host, _plain_host, st.text(alphabet="abz09.-X[]:@%é ", max_size=10)
)
_plain_port = st.integers(1, 65535).map(lambda p: f":{p}")
_plainish_port = st.one_of(
    st.just(""),
    _plain_port,
    _plain_port,
    st.integers(0, 70000).map(lambda p: f":{p}"),
    st.text(alphabet="0189a ", max_size=6).map(lambda p: f":{p}"),
)
_plain_path = st.text(alphabet="abzXZ019/._~-", max_size=10)
_plainish_path = st.one_of(
    _plain_path, _plain_path, _plain_path, st.text(alphabet="abz/._~-%?#@[]:\\té", max_size=10)
)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["https://", "https://", "HTTPS://", "http://", " https://"]),
    _plainish_host,
    _plainish_port,
    _plainish_path,
)
def test_a_plain_https_url_is_one_urllib_finds_nothing_wrong_with(
    scheme: str, host: str, port: str, path: str
) -> None:
    # The fast path skips urllib.parse: only for URLs it would accept, split alike.
    url = f"{scheme}{host}{port}/{path}"
    if order_module._plain_https(url):
        assert order_module._url_problems(url) == []
        parts = urllib.parse.urlsplit(url)
        assert endpoint(url) == (parts.scheme, parts.hostname, parts.port, parts.path)


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("https://10.0.2.100:8443", True),
        ("https://market.example.org/cpushare/v1", True),
        ("https://market.example.org:65535/", True),
        ("https://market.example.org:65536", False),
        ("https://market.example.org:0", False),
        ("https://market.example.org:08443", False),
        ("https://Market.example.org", False),
        ("https://[::1]:8443", False),
        ("https://user@market.example.org", False),
        ("https://market.example.org/?q", False),
        ("http://localhost", False),
        ("https://", False),
    ],
)
def test_only_a_plain_https_url_skips_urllib(
    url: str, plain: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The orders' check in the fleet's child imports urllib.parse only for a URL that is
    # not plain https (the market's own are).
    asked: list[str] = []
    monkeypatch.setattr(order_module, "_url_problems", lambda u: asked.append(u) or [])
    assert url_problems(url) == []
    assert asked == ([] if plain else [url])
