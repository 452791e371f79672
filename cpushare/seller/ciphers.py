"""The TLS ciphers of a seller's connection, chosen for its CPU.

Without AES instructions (a CPU that QEMU emulates offers none), OpenSSL's AES-GCM runs
from plain tables: measured in such a guest, 50 KB through TLS 1.3's AES-256-GCM cost
12 ms, through ChaCha20-Poly1305 1 ms, and a seller sends every job's output and receives
every input. Python 3.11 cannot order TLS 1.3's suites, and a server that prefers its own
order (the market's Python one does) picks AES-GCM; so on such a CPU the connection offers
TLS 1.2's ECDHE ChaCha20-Poly1305 suites alone: an AEAD with forward secrecy, as TLS 1.3
gives. With AES instructions it keeps the defaults (TLS 1.3 where the server has it).
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# ECDHE key exchange, ChaCha20-Poly1305: whichever the certificate's key signs with.
CHACHA20 = "ECDHE+CHACHA20"


def has_aes(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU has AES instructions (x86's `aes`, Arm's `aes` flag); True where
    nothing says (not Linux): the defaults are kept."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return True
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return "aes" in value.split()
    return True


@functools.cache
def _this_cpu_has_aes() -> bool:
    return has_aes()


def suit(context: ssl.SSLContext, aes: bool | None = None) -> ssl.SSLContext:
    """`context`, limited to ChaCha20-Poly1305 over TLS 1.2 on a CPU without AES
    instructions (`aes`: this one's, unless given)."""
    if not (_this_cpu_has_aes() if aes is None else aes):
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(CHACHA20)
    return context
