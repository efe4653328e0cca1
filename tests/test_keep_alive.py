"""Keep-alive pings are spread over the interval: sockets that went quiet together are not all
pinged in one walk (a burst of thousands of pings and pongs stalls a process's deliveries)."""

from __future__ import annotations

from collections import Counter

from agencyhub.websocket import KeepAlive


class Socket:
    """What the keep-alive walk reads and calls on a socket's handler; a ping is answered."""

    def __init__(self, last_sent: float) -> None:
        self.last_sent = last_sent
        self.unanswered_since: float | None = None
        self.pings: list[float] = []
        self.cut_at: float | None = None
        self.now = 0.0

    def ping(self) -> None:
        self.pings.append(self.now)
        self.last_sent = self.now

    def cut(self) -> None:
        self.cut_at = self.now


def walk(keep_alive: KeepAlive, sockets: list[Socket], start: float, seconds: float) -> Counter:
    """Sweeps as the keep-alive task does for `seconds`; pings by sweep time."""
    step = keep_alive.interval / keep_alive.SWEEPS
    pinged: Counter[float] = Counter()
    for n in range(round(seconds / step)):
        now = start + n * step
        for socket in sockets:
            socket.now = now
        pinged[now] = keep_alive.sweep(now)
    return pinged


def test_sockets_that_went_quiet_together_are_pinged_over_several_walks_each_once():
    keep_alive = KeepAlive(15)
    sockets = [Socket(last_sent=0.0) for _ in range(1_000)]
    for socket in sockets:
        keep_alive.watch(socket)  # type: ignore[arg-type]

    pinged = walk(keep_alive, sockets, start=15.0, seconds=15)

    assert max(pinged.values()) == 100  # 1.5 x 1,000 sockets / 15 walks
    assert sum(pinged.values()) == 1_000
    assert all(len(socket.pings) == 1 for socket in sockets)
    # and each within the interval after it became due
    assert max(socket.pings[0] for socket in sockets) < 15.0 + 15


def test_the_quietest_sockets_go_first_and_none_waits_past_an_interval_in_steady_state():
    keep_alive = KeepAlive(15)
    sockets = [Socket(last_sent=-n / 100) for n in range(600)]  # quiet for up to 6 s more
    for socket in sockets:
        keep_alive.watch(socket)  # type: ignore[arg-type]

    walk(keep_alive, sockets, start=15.0, seconds=60)

    in_first_walk = {n for n, socket in enumerate(sockets) if socket.pings[0] == 15.0}
    assert in_first_walk == set(range(540, 600))  # a walk's share (60), the quietest
    for socket in sockets:
        gaps = [b - a for a, b in zip(socket.pings, socket.pings[1:], strict=False)]
        assert gaps and max(gaps) <= 15 + 2 * keep_alive.interval / keep_alive.SWEEPS


def test_a_socket_that_left_a_ping_unanswered_for_an_interval_is_cut_whatever_the_share():
    keep_alive = KeepAlive(15)
    silent = [Socket(last_sent=0.0) for _ in range(300)]
    for socket in silent:
        socket.unanswered_since = 0.0
        keep_alive.watch(socket)  # type: ignore[arg-type]

    walk(keep_alive, silent, start=15.0, seconds=1)

    assert all(socket.cut_at == 15.0 for socket in silent)
    assert not any(socket.pings for socket in silent)
