"""Passwords: hashed with scrypt (memory-hard: 16 MiB and about 50 ms a try), the salt and
parameters kept in the stored string so they can be raised later without breaking logins."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from market.errors import MarketError

# scrypt's cost (N), block size (r) and parallelism (p): 128 * N * r bytes = 16 MiB.
N, R, P = 1 << 14, 8, 1
MIN_LENGTH = 10
MAX_LENGTH = 1024


def check_new(password: str) -> None:
    """Refuse a password too short to resist guessing, or absurdly long."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise MarketError(f"a password must be {MIN_LENGTH} to {MAX_LENGTH} characters long")


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p, dklen=32
    )


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$SALT$HASH` (hex) for a new password."""
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, N, R, P)
    return f"scrypt${N}${R}${P}${salt.hex()}${digest.hex()}"


def verify(password: str, stored: str | None) -> bool:
    """Whether `password` matches `stored`; an account without a password matches nothing,
    after the same work, so the reply's time tells nothing about which accounts exist."""
    if stored is None:
        _derive(password, b"\0" * 16, N, R, P)
        return False
    scheme, n, r, p, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    found = _derive(password[:MAX_LENGTH], bytes.fromhex(salt), int(n), int(r), int(p))
    return hmac.compare_digest(found, bytes.fromhex(digest))
