"""The host identity: the enrollment reply checked, handed over a pipe, never shown."""

from __future__ import annotations

import os
from typing import Any

import pytest

from cpushare.replies import BadReply
from cpushare.seller.host import Identity, parse_enrollment, read_identity, write_identity

SECRET = "A" * 42 + "_"
GOOD = {"host": "host-7", "secret": SECRET, "seats": 4, "order": "o-1"}


def test_an_enrollment_reply_becomes_its_host_with_every_seat() -> None:
    identity = parse_enrollment(dict(GOOD), "o-1", 4)
    assert identity == Identity("host-7", SECRET, 4, "o-1", (0, 1, 2, 3))
    assert identity.credentials == ("host-7", SECRET)
    assert identity.on_seats(3).own_seats == [3]
    # Each seller of the host has seats of its own, in turn.
    assert identity.for_seller(1, per_seller=2).own_seats == [2, 3]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"host": "o-1"}, "host id"),
        ({"host": None}, "no host id"),
        ({"secret": "short"}, "32 bytes"),
        ({"secret": "A" * 42 + "/"}, "32 bytes"),
        ({"seats": 5}, "seats"),
        ({"order": "o-2"}, "seats, not 4"),
    ],
)
def test_an_enrollment_reply_that_is_not_what_was_asked_is_a_bad_reply(
    change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(BadReply, match=reason):
        parse_enrollment({**GOOD, **change}, "o-1", 4)


@pytest.mark.parametrize(
    ("own", "seats"),
    [((4,), 4), ((-1,), 4), ((0,), 0), ((0,), 257), ((), 4), ((1, 1), 4), ((True,), 4)],
)
def test_a_seat_outside_its_host_is_no_identity(own: tuple[int, ...], seats: int) -> None:
    with pytest.raises(ValueError, match=r"not a seat|not seats|twice"):
        Identity("host-7", SECRET, seats, "o-1", own)


def test_the_secret_is_never_in_a_repr() -> None:
    identity = Identity("host-7", SECRET, 1, "o-1")
    assert SECRET not in repr(identity) and "host-7" in repr(identity)


def test_an_identity_crosses_a_pipe_whole() -> None:
    identity = Identity("host-7", SECRET, 4, "o-1", (2, 3))
    read_fd, write_fd = os.pipe()
    write_identity(write_fd, identity)
    assert read_identity(read_fd) == identity
    for fd in (read_fd, write_fd):  # both ends closed on the way
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_pipe_closed_with_nothing_said_means_no_host() -> None:
    read_fd, write_fd = os.pipe()
    write_identity(write_fd, None)
    assert read_identity(read_fd) is None


@pytest.mark.parametrize("data", [b"{", b"[]\n", b'{"host": "host-7"}', b"x" * 9000])
def test_anything_else_on_the_pipe_is_no_identity(data: bytes) -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    os.write(write_fd, data)
    os.close(write_fd)
    with pytest.raises(ValueError):
        read_identity(read_fd)
