"""The rules: synchronous, no I/O, time passed in: `now_ms` (wall clock, ms since the
epoch) for instants, `mono_ms` (monotonic) for deadlines (core/clock.py)."""
