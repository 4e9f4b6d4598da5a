"""The fault proxy itself, against a real redis-server: each mode does what it says.

Only lower bounds on time are checked (a delay is at least its low end; a slow
proxy takes at least bytes / rate): a loaded machine can only make them longer.
"""

from __future__ import annotations

import socket
import time

import pytest
from faultproxy import FaultProxy, Mode


def resp(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


@pytest.fixture
def proxy(redis):
    with FaultProxy(redis.port, seed=1) as running:
        yield running


def test_pass_forwards_both_ways(proxy):
    with connect(proxy) as sock:
        sock.sendall(resp("PING"))
        assert read_exactly(sock, 7) == b"+PONG\r\n"
    assert proxy.stats.accepted == 1 and proxy.stats.forwarded >= 14


def test_blackhole_swallows_then_heal_resets_and_serves_again(proxy):
    with connect(proxy) as old:
        old.sendall(resp("PING"))
        assert read_exactly(old, 7) == b"+PONG\r\n"
        proxy.blackhole()
        old.settimeout(0.5)
        old.sendall(resp("PING"))
        with pytest.raises(TimeoutError):
            old.recv(16)
        with connect(proxy) as new:  # a new connection is accepted, and silent
            new.settimeout(0.5)
            new.sendall(resp("PING"))
            with pytest.raises(TimeoutError):
                new.recv(16)
        assert proxy.stats.swallowed >= 14
        proxy.forward()  # the old connection lost bytes: it is reset, not resumed
        old.settimeout(2.0)
        with pytest.raises(ConnectionError):
            if not old.recv(16):
                raise ConnectionResetError("closed")
    with connect(proxy) as fresh:
        fresh.sendall(resp("PING"))
        assert read_exactly(fresh, 7) == b"+PONG\r\n"
    assert proxy.mode is Mode.PASS


def test_cut_closes_and_refuses(proxy):
    with connect(proxy) as sock:
        sock.sendall(resp("PING"))
        read_exactly(sock, 7)
        proxy.cut()
        assert sock.recv(16) == b""  # FIN
    with connect(proxy) as refused:
        assert refused.recv(16) == b""
    assert proxy.stats.refused >= 1 and proxy.connections == 0


def test_reset_aborts_with_rst(proxy):
    with connect(proxy) as sock:
        sock.sendall(resp("PING"))
        read_exactly(sock, 7)
        assert proxy.reset() == 1
        with pytest.raises(ConnectionResetError):
            sock.sendall(resp("PING"))
            if not sock.recv(16):
                raise AssertionError("a FIN, not an RST")


def test_delay_holds_replies_at_least_low_and_keeps_order(proxy):
    proxy.delay(0.3, 0.5)
    with connect(proxy, timeout=10) as sock:
        sent = time.monotonic()
        for _ in range(20):  # twenty separate chunks, each held 0.3–0.5 s, in order
            sock.sendall(resp("INCR", "chaos:proxy:counter"))
            time.sleep(0.01)
        replies = b""
        while replies.count(b"\r\n") < 20:
            replies += sock.recv(4096)
        assert time.monotonic() - sent >= 0.3
    assert replies == b"".join(b":%d\r\n" % n for n in range(1, 21))
    assert proxy.stats.delayed_chunks >= 2


def test_slow_paces_the_bytes(proxy):
    value = "x" * 20_000
    with connect(proxy, timeout=10) as sock:
        sock.sendall(resp("SET", "chaos:proxy:big", value))
        assert read_exactly(sock, 5) == b"+OK\r\n"
        proxy.slow(40_000)  # 20 kB reply at 40 kB/s: at least half a second
        started = time.monotonic()
        sock.sendall(resp("GET", "chaos:proxy:big"))
        header = b"$20000\r\n"
        body = read_exactly(sock, len(header) + 20_000 + 2)
        assert time.monotonic() - started >= 0.45
    assert body == header + value.encode() + b"\r\n"


def test_bad_settings_are_refused(proxy):
    with pytest.raises(ValueError):
        proxy.delay(0.5, 0.1)
    with pytest.raises(ValueError):
        proxy.slow(0)
    assert proxy.mode is Mode.PASS
