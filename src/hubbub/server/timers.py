"""The node's clocks: a fast tick for time-based rules, directory housekeeping, and the
WebSocket heartbeat."""

import asyncio
import logging
from collections.abc import Callable

from hubbub.core.effects import Later
from hubbub.features.calls import call_frames_unanswered
from hubbub.features.system import housekeeping, tick
from hubbub.server.hub import Hub

log = logging.getLogger("hubbub.timers")

TICK_S = 0.1
# Directory heartbeat and reaping of dead nodes (well inside the node TTL).
HOUSEKEEPING_S = 2.5
# With several nodes: how often each compares its rooms' positions with the store, to find
# room events the broker lost when nothing later in the room shows the hole.
POSITION_CHECK_S = 10.0


class Timers:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def start(self) -> None:
        self._every("tick", TICK_S, self._tick)
        self._every("housekeeping", HOUSEKEEPING_S, self._housekeeping)
        if self.hub.fanout is not None:
            self._every("positions", POSITION_CHECK_S, self.hub.fanout.check_positions)
        if self.hub.node.settings.heartbeat > 0:
            self._every("heartbeat", self.hub.node.settings.heartbeat, self.hub.heartbeat)

    def stop(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def _every(self, name: str, seconds: float, fn: Callable[[], None]) -> None:
        def run() -> None:
            try:
                fn()
            except Exception:  # a bug in one rule must not stop time for all the others
                log.exception("%s failed", name)
            if name in self._handles:
                self._handles[name] = self.hub.loop.call_later(seconds, run)

        self._handles[name] = self.hub.loop.call_later(seconds, run)

    def _tick(self) -> None:
        node = self.hub.node
        mono = node.clock.mono_ms()
        self.hub.run(tick(node, node.clock.now_ms(), mono))
        if self.hub.fanout is not None:
            self.hub.fanout.fill_gaps(mono)
            self.hub.run(call_frames_unanswered(node, self.hub.fanout.unanswered(mono)))

    def _housekeeping(self) -> None:
        node = self.hub.node
        self.hub.run([Later(housekeeping(node, node.clock.now_ms(), node.clock.mono_ms()))])
