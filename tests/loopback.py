"""A network namespace with only the loopback interface, for the tests that start Ray (its servers bind every
interface; there, that is 127.0.0.1 alone)."""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from pathlib import Path

CLONE_NEWNET = 0x40000000


def loopback_only_network():
    """Move this thread (and the processes it starts) into a new network namespace with only `lo`, up.
    Returns a function that moves it back."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/self/ns/net", os.O_RDONLY)
    if libc.unshare(CLONE_NEWNET) != 0:
        os.close(original)
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # ip link set lo up
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))

    def restore():
        assert libc.setns(original, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        os.close(original)

    return restore


def listening_addresses() -> set[str]:
    """Local addresses of the TCP sockets listening in this network namespace (from /proc/net/tcp*)."""
    found = set()
    for name, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                raw = bytes.fromhex(local.split(":")[0])
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, words))
    return found
