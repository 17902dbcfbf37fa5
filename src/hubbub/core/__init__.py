"""The rules: synchronous, no I/O, time passed in as `now` (ms since the epoch)."""
