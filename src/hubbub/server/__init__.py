"""Adapters: sockets, HTTP, timers. No product rule lives here."""
