"""The node's two clocks: a fast tick for time-based rules, a slow one for heartbeats."""

import asyncio
import logging

from hubbub.features.system import tick
from hubbub.server.hub import Hub

log = logging.getLogger("hubbub.timers")

TICK_S = 0.1


class Timers:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._handles: list[asyncio.TimerHandle] = []

    def start(self) -> None:
        self._schedule_tick()
        if self.hub.node.settings.heartbeat > 0:
            self._schedule_heartbeat()

    def stop(self) -> None:
        for h in self._handles:
            h.cancel()
        self._handles.clear()

    def _schedule_tick(self) -> None:
        self._handles = [h for h in self._handles if not h.cancelled()]
        self._handles.append(self.hub.loop.call_later(TICK_S, self._tick))

    def _tick(self) -> None:
        try:
            node = self.hub.node
            now = node.clock.now_ms()
            self.hub.run(tick(node, now))
            if self.hub.fanout is not None:
                self.hub.fanout.fill_gaps(now)
        except Exception:  # a bug in one rule must not stop time for all the others
            log.exception("tick failed")
        self._schedule_tick()

    def _schedule_heartbeat(self) -> None:
        self._handles.append(
            self.hub.loop.call_later(self.hub.node.settings.heartbeat, self._heartbeat))

    def _heartbeat(self) -> None:
        try:
            self.hub.heartbeat()
        except Exception:
            log.exception("heartbeat failed")
        self._schedule_heartbeat()
