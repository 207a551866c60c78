"""Leader election between operator replicas, through kopf's peering.

Every replica registers in one peering object (``KopfPeering`` in each served namespace, or a
``ClusterKopfPeering`` when serving every namespace) with a priority and a lifetime; kopf pauses
a replica entirely (watches, handlers, the queues' daemons) while a live peer has a higher
priority. So only the leader reconciles, scales, sweeps and requeues. A replica stopped
gracefully removes itself from the object and the next one resumes at once; one killed stays
listed until its lifetime has passed, and then the standby resumes.

Equal priorities would pause every replica, so each takes one of its own: the older replica
ranks higher (a rollout's new pods do not take over from a leader that still runs), and a
random tail breaks a tie between replicas started in the same millisecond.
"""

from __future__ import annotations

import random

PRIORITY_CEILING = 2**42
"""Above every start time in milliseconds since 1970 until the year 2109; times TIE_BREAK it
stays below 2**53, exact in JSON for every client."""
TIE_BREAK = 1000


def priority(started_ns: int, *, tie_break: int | None = None) -> int:
    """The peering priority of a replica started at ``started_ns`` (``time.time_ns()``): the
    earlier, the higher."""
    tail = random.randrange(TIE_BREAK) if tie_break is None else tie_break
    return (PRIORITY_CEILING - started_ns // 1_000_000) * TIE_BREAK + tail
