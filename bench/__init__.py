"""Benchmarks of kubetasks; each script writes its results next to it."""
