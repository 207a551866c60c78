"""``kubetasks worker``: claims tasks from PostgreSQL and runs them.

The pieces, from the outside in:

- ``command``: the CLI entry point; ``settings`` reads the configuration once.
- ``worker``: the claim loop, heartbeats, putting back an earlier process's tasks at start,
  and the drain on SIGTERM.
- ``slots``: the claimed tasks being run; ``threads`` runs the sync ones.
- ``attempt``: running one claimed task once, as a plain value in and out.
- ``reporter``: writing outcomes back, batched and fenced on each task's claim.
- ``policy``: the decisions that are pure functions (retry or fail, how long to sleep).
- ``listener``, ``health``, ``metrics``: LISTEN wake-ups, the HTTP probes, Prometheus.
"""
