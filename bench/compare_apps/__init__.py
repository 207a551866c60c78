"""The same two tasks for every queue `bench.compare` measures: a no-op, and one that tells the
benchmark when it started (a UDP datagram to ``KT_BENCH_UDP_PORT``), for pickup latency."""
