"""The `.cpu` sell order: a small versioned TOML file that ties a seller to a market account.

A sell order names the market (its URL and how to trust its TLS certificate), the order's
id and secret (the seller's credentials), the account its CPUCoins go to, the nice level
the seller runs jobs at, and the largest jobs it accepts. Several identical copies of one
order are legal: one seller runs per file. Standard library only: the seller in the live
image parses it too.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path

from cpushare.record import record

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any

FORMAT_VERSION = 1
MAX_ORDER_BYTES = 64 << 10
MAX_MEMORY_MB = 64 << 10
MAX_CPU_SECONDS = 7 * 24 * 3600

ORDER_ID = re.compile(r"[A-Za-z0-9_-]{4,64}")
SECRET = re.compile(r"[A-Za-z0-9_-]{16,128}")
ACCOUNT = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_C0_OR_SPACE = "".join(map(chr, range(33)))

_KEYS: dict[str, set[str]] = {
    "": {"format", "market", "order", "seller"},
    "market": {"url", "cert_sha256", "ca_pem"},
    "order": {"id", "secret", "account"},
    "seller": {"nice", "max_memory_mb", "max_cpu_seconds"},
}


class OrderError(ValueError):
    """A sell order that cannot be used; `problems` names every one found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@record(frozen=True)
class SellOrder:
    """One validated sell order."""

    market_url: str
    order_id: str
    secret: str
    account: str
    cert_sha256: str | None = None
    ca_pem: str | None = None
    nice: int = 19
    max_memory_mb: int = 256
    max_cpu_seconds: int = 60

    @property
    def max_memory_bytes(self) -> int:
        return self.max_memory_mb << 20


def normalize_pin(pin: str) -> str:
    """A certificate pin as 64 lower-case hex digits (colons and case are tolerated)."""
    return pin.replace(":", "").strip().lower()


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses: the only hosts plain HTTP may reach."""
    if host == "localhost":
        return True
    # Imported here, as urllib.parse below: orders are checked in a child of the fleet or
    # on the host, and what the fleet imports stays in the live system's memory.
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What a plain https URL is made of (see `_plain_https`).
_PLAIN_HOST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_PLAIN_PATH = _PLAIN_HOST | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ/_~")


def _plain_https(url: str) -> bool:
    """Whether `url` is `https://HOST[:PORT][/PATH]` of the plainest characters (a host
    of lower-case letters, digits, dots and hyphens, a port 1-65535 without a leading
    zero, a path of letters, digits and `/._~-`): urllib.parse splits such a URL as
    `endpoint` does and finds nothing `url_problems` objects to. The market's own URLs
    are of this kind: the fleet's child that checks the orders then never imports
    urllib.parse (under emulation 17 ms of guest time on the way to the first sale)."""
    if not url.startswith("https://"):
        return False
    netloc, _, path = url[len("https://") :].partition("/")
    host, colon, port = netloc.partition(":")
    if not host or not _PLAIN_HOST.issuperset(host) or not _PLAIN_PATH.issuperset(path):
        return False
    if not colon:
        return True
    return (
        0 < len(port) <= 5
        and port.isdigit()
        and port.isascii()
        and port[0] != "0"
        and (int(port) <= 65535)
    )


def url_problems(url: str) -> list[str]:
    """What is wrong with a market URL (https, or http on loopback only)."""
    if _plain_https(url):
        return []
    return _url_problems(url)


def _url_problems(url: str) -> list[str]:
    """`url_problems` by urllib.parse, for any URL."""
    import urllib.parse  # with ipaddress: 0.47 MiB in the fleet (sellers use `endpoint`)

    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [f"market.url {url!r} is not a URL: {exc}"]
    problems: list[str] = []
    if parts.scheme not in ("https", "http"):
        problems.append(f"market.url {url!r} must start with https://")
    if not parts.hostname:
        problems.append(f"market.url {url!r} has no host")
    elif parts.scheme == "http" and not is_loopback_host(parts.hostname):
        problems.append(f"market.url {url!r} uses plain http on a non-loopback host: use https://")
    if parts.username or parts.password or parts.query or parts.fragment:
        problems.append(f"market.url {url!r} must not carry a user, query or fragment")
    if port == 0:
        problems.append(f"market.url {url!r} has port 0")
    if not problems and endpoint(url) != (parts.scheme, parts.hostname, port, parts.path):
        # A seller splits it with `endpoint`: a URL it would split otherwise is refused.
        problems.append(f"market.url {url!r} is not split alike by the sellers")
    return problems


def endpoint(url: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of a market URL that `url_problems` accepts, as
    urllib.parse.urlsplit gives them (scheme and host in lower case, an IPv6 host without
    its brackets, no port: None), without importing it. ValueError if the port is not a
    number."""
    # What urlsplit cleans up first: leading controls and spaces, tabs and line ends.
    url = url.lstrip(_C0_OR_SPACE).replace("\t", "").replace("\r", "").replace("\n", "")
    scheme, _, rest = url.partition("://")
    end = min((i for i in map(rest.find, "/?#") if i != -1), default=len(rest))
    netloc, path = rest[:end], rest[end:].partition("#")[0].partition("?")[0]
    if netloc.startswith("["):
        host, _, after = netloc[1:].partition("]")
        port = after.partition(":")[2]
    else:
        host, _, port = netloc.partition(":")
    return scheme.lower(), host.lower(), int(port) if port else None, path


def pem_problems(pem: str) -> list[str]:
    """What is wrong with an inline PEM CA certificate."""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        return ["market.ca_pem is not a PEM certificate (no BEGIN CERTIFICATE line)"]
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        return [f"market.ca_pem is not a usable PEM certificate: {exc}"]
    return []


def _get(table: dict[str, Any], key: str, kind: type, where: str, problems: list[str]) -> Any:
    """table[key] if it has the right type, else None with the problem recorded."""
    value = table.get(key)
    if value is None:
        return None
    # bool is an int in Python, but `nice = true` is a mistake in an order.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        problems.append(f"{where}{key} must be {kind.__name__}, not {type(value).__name__}")
        return None
    return value


def _unknown_keys(doc: dict[str, Any], problems: list[str]) -> None:
    for key in sorted(set(doc) - _KEYS[""]):
        problems.append(f"unknown key {key!r}: remove it or check its spelling")
    for section in ("market", "order", "seller"):
        table = doc.get(section)
        if isinstance(table, dict):
            for key in sorted(set(table) - _KEYS[section]):
                problems.append(f"unknown key {section}.{key!r}: remove it or check its spelling")


def _section(doc: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name} must be a [{name}] table")
        return {}
    return table


def _required(
    table: dict[str, Any], key: str, pattern: re.Pattern[str], hint: str, out: list[str]
) -> str | None:
    """table[key] if it is a string matching pattern, else None with the problem recorded."""
    name = f"order.{key}"
    value: str | None = _get(table, key, str, "order.", out)
    if key not in table:
        out.append(f"{name} is missing")
    elif value is not None and not pattern.fullmatch(value):
        shown = "" if key == "secret" else f" {value!r}"
        out.append(f"{name}{shown} is malformed: {hint}")
    else:
        return value
    return None


def _bounded(value: int | None, name: str, low: int, high: int, problems: list[str]) -> None:
    if value is not None and not low <= value <= high:
        problems.append(f"{name} is {value}: it must be between {low} and {high}")


def order_from_toml(doc: dict[str, Any]) -> SellOrder:
    """Validate a parsed order document; raise OrderError naming every problem."""
    problems: list[str] = []
    version = _get(doc, "format", int, "", problems)
    if version is None and "format" not in doc:
        problems.append(f"format is missing: the first line should be `format = {FORMAT_VERSION}`")
    elif version is not None and version != FORMAT_VERSION:
        problems.append(f"format {version} is not supported: this seller reads format 1")
    _unknown_keys(doc, problems)
    market = _section(doc, "market", problems)
    order = _section(doc, "order", problems)
    seller = _section(doc, "seller", problems)

    url = _get(market, "url", str, "market.", problems)
    if url is None and "url" not in market:
        problems.append("market.url is missing")
    elif url is not None:
        problems += url_problems(url)
    pin = _get(market, "cert_sha256", str, "market.", problems)
    pem = _get(market, "ca_pem", str, "market.", problems)
    if pin is not None:
        pin = normalize_pin(pin)
        if not SHA256_HEX.fullmatch(pin):
            problems.append("market.cert_sha256 must be 64 hex digits (sha256 of the DER cert)")
    if pem is not None:
        pem = pem.strip() + "\n"
        problems += pem_problems(pem)
    if pin is not None and pem is not None:
        problems.append("market.cert_sha256 and market.ca_pem are both set: keep one")
    if url is not None and url.startswith("https:") and pin is None and pem is None:
        problems.append("an https market needs market.cert_sha256 or market.ca_pem")

    order_id = _required(order, "id", ORDER_ID, "4-64 letters, digits, '-' or '_'", problems)
    secret = _required(order, "secret", SECRET, "16-128 letters, digits, '-' or '_'", problems)
    account = _required(order, "account", ACCOUNT, "lower-case letters, digits, '.-_'", problems)

    nice = _get(seller, "nice", int, "seller.", problems)
    memory = _get(seller, "max_memory_mb", int, "seller.", problems)
    cpu = _get(seller, "max_cpu_seconds", int, "seller.", problems)
    _bounded(nice, "seller.nice", 0, 19, problems)
    _bounded(memory, "seller.max_memory_mb", 1, MAX_MEMORY_MB, problems)
    _bounded(cpu, "seller.max_cpu_seconds", 1, MAX_CPU_SECONDS, problems)

    if problems or url is None or order_id is None or secret is None or account is None:
        raise OrderError(problems)
    return SellOrder(
        market_url=url.rstrip("/"),
        order_id=order_id,
        secret=secret,
        account=account,
        cert_sha256=pin,
        ca_pem=pem,
        nice=19 if nice is None else nice,
        max_memory_mb=256 if memory is None else memory,
        max_cpu_seconds=60 if cpu is None else cpu,
    )


def parse_order(text: str) -> SellOrder:
    """Parse and validate the text of a `.cpu` file; raise OrderError naming every problem."""
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_ORDER_BYTES:
        raise OrderError([f"the order is larger than {MAX_ORDER_BYTES} bytes"])
    # An order as render_order writes it is read without tomllib; anything else by it.
    # Imported here too: the fleet itself parses no order.
    from cpushare import plaintoml

    doc = plaintoml.loads(text)
    if doc is None:
        # Imported here: the fleet reads its orders in a child (cpushare.seller.apart)
        # and so never loads tomllib (with typing, datetime and string: about 1 MiB).
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise OrderError([f"not valid TOML: {exc}"]) from None
    return order_from_toml(doc)


def parse_order_bytes(data: bytes) -> SellOrder:
    """Like parse_order, for raw bytes (a file or a download) that must be UTF-8."""
    if len(data) > MAX_ORDER_BYTES:
        raise OrderError([f"the order is larger than {MAX_ORDER_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OrderError([f"not UTF-8 text: {exc}"]) from None
    return parse_order(text)


def load_order(path: Path) -> SellOrder:
    """Read and validate a `.cpu` file; OSError if it cannot be read, OrderError if invalid."""
    with open(path, "rb") as f:
        data = f.read(MAX_ORDER_BYTES + 1)
    return parse_order_bytes(data)


def cert_pin(cert_pem: str) -> str:
    """The pin of a PEM certificate: sha256 (hex) of its DER form, as `market.cert_sha256`.
    ValueError if `cert_pem` holds no PEM certificate."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem)).hexdigest()


def _toml_string(value: str) -> str:
    # A TOML basic string: quotes, backslashes and control characters escaped; the rest
    # is UTF-8 as it is (JSON's surrogate-pair escapes would not be valid TOML).
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_order(order: SellOrder) -> str:
    """The text of a `.cpu` file for `order`; OrderError naming every problem if the order
    is not valid or would not read back as the same order."""
    lines = [
        "# CPUShare sell order. Boot the CPUShare live CD (or run `livecd sell` on this",
        "# file) to sell idle CPU to this market; CPUCoins go to the account below.",
        "# Several identical copies of this file are fine: one seller runs per copy.",
        f"format = {FORMAT_VERSION}",
        "",
        "[market]",
        f"url = {_toml_string(order.market_url)}",
    ]
    if order.cert_sha256 is not None:
        lines += [
            "# sha256 of the market's TLS certificate (DER): the seller trusts exactly this"
            " certificate.",
            f"cert_sha256 = {_toml_string(order.cert_sha256)}",
        ]
    if order.ca_pem is not None:
        # A literal multi-line string: a PEM has no quotes or backslashes to escape.
        lines += [
            "# The CA that signs the market's certificate: the seller trusts it alone.",
            "ca_pem = '''",
            order.ca_pem.strip(),
            "'''",
        ]
    lines += [
        "",
        "[order]",
        f"id = {_toml_string(order.order_id)}",
        f"secret = {_toml_string(order.secret)}",
        f"account = {_toml_string(order.account)}",
        "",
        "[seller]",
        "# Jobs run at this nice level (19 = only when nothing else wants the CPU).",
        f"nice = {order.nice}",
        "# The largest jobs this seller accepts.",
        f"max_memory_mb = {order.max_memory_mb}",
        f"max_cpu_seconds = {order.max_cpu_seconds}",
    ]
    text = "\n".join(lines) + "\n"
    if parse_order(text) != order:
        raise OrderError(["the rendered order does not read back as the same order"])
    return text
