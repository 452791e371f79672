"""The plain-TOML reader of orders: whatever it reads, tomllib reads the same; what it
does not read, it leaves to tomllib; a rendered order is always within it."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpushare import plaintoml
from cpushare.order import SellOrder, parse_order, render_order
from market.tls import self_signed

PEM = self_signed(["m.example"])[0].decode()


@pytest.mark.parametrize(
    "order",
    [
        SellOrder("http://127.0.0.1:8080", "o-1234", "s" * 24, "lab", nice=5),
        SellOrder("https://10.0.2.100:8443", "o-abcd", "t" * 32, "a.b-c", cert_sha256="ab" * 32),
        SellOrder("https://m.example", "o-wxyz", "u" * 20, "acct", ca_pem=PEM, max_cpu_seconds=9),
    ],
)
def test_a_rendered_order_is_read_without_tomllib_as_tomllib_reads_it(order: SellOrder) -> None:
    text = render_order(order)
    doc = plaintoml.loads(text)
    assert doc is not None
    assert doc == tomllib.loads(text)
    assert parse_order(text) == order


@pytest.mark.parametrize(
    "text",
    [
        'a = "tab\\there"\n',  # an escape
        'a = "x"\r\n',  # a carriage return
        "a = 1\na = 2\n",  # a duplicate key
        "[t]\n[t]\n",  # a duplicate table
        "t = 1\n[t]\n",  # a table over a key
        "a.b = 1\n",  # a dotted key
        "a = 1_000\n",  # an underscore
        "a = 01\n",  # a leading zero (invalid TOML)
        "a = 1.5\n",
        "a = true\n",
        "a = 'literal'\n",
        "a = '''x'''\n",  # on one line
        "a = '''\nno end\n",
        "a = '''\nit's\n'''\n",  # a quote inside
        "a = '''\nx\n''' # c\n",
        "[ t ]\n",
        '"quoted" = 1\n',
        "a = 1 # \x01\n",  # a control character in a comment
        "\ufeffa = 1\n",
    ],
)
def test_anything_else_is_left_to_tomllib(text: str) -> None:
    assert plaintoml.loads(text) is None


def test_an_invalid_order_still_gets_tomllibs_message() -> None:
    with pytest.raises(Exception, match="not valid TOML"):
        parse_order("format = 1\nformat = 2\n")


# Lines near the subset's edges, mixed at random: where the reader answers, its answer
# must be tomllib's.
KEY = st.sampled_from(["a", "b", "url", "x-y_1", "a.b", '"q"', "é"])
VALUE = st.one_of(
    st.text(alphabet=st.sampled_from("ab #\"\\\t\x01é'\x7f\x85"), max_size=6).map(
        lambda s: f'"{s}"'
    ),
    st.sampled_from(["0", "-0", "+7", "12", "01", "1_0", "1.0", "true", "'x'", '"a"b"']),
)
SPACE = st.sampled_from(["", " ", "\t", "  "])
LINE = st.one_of(
    st.tuples(SPACE, KEY, SPACE, VALUE, SPACE, st.sampled_from(["", "# c", "#", "# \x01"])).map(
        lambda t: f"{t[0]}{t[1]}{t[2]}={t[2]}{t[3]}{t[4]}{t[5]}"
    ),
    st.sampled_from(["[market]", "[order]", "[seller]", "[a.b]", "[ x ]", "", "  # note"]),
    st.tuples(KEY, st.lists(st.sampled_from(["", "line", "it's", "\tx", "'''", "y'''"]))).map(
        lambda t: "\n".join([f"{t[0]} = '''", *t[1], "'''"])
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(LINE, max_size=8), st.sampled_from(["\n", ""]))
def test_what_the_reader_reads_tomllib_reads_the_same(lines: list[str], end: str) -> None:
    text = "\n".join(lines) + end
    doc = plaintoml.loads(text)
    if doc is None:
        return
    assert doc == tomllib.loads(text), text
