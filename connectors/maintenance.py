"""Redis maintenance flags (`maintenance:{instance_id}`) as the notify sink's `is_muted` hook.

Operators set the key (usually with a TTL, `SET maintenance:prod-db-01 1 EX 3600`) to mute
notifications for an instance; the alert transitions are still recorded. One pipelined round trip
per batch, with EXISTS once per distinct instance, because the check sits on the delivery path
of every batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import redis

from rules.model import AlertEvent

MAINTENANCE_PREFIX = "maintenance:"


def maintenance_key(instance_id: str, prefix: str = MAINTENANCE_PREFIX) -> str:
    return f"{prefix}{instance_id}"


def redis_maintenance_checker(
    redis_client: redis.Redis, prefix: str = MAINTENANCE_PREFIX
) -> Callable[[Sequence[AlertEvent]], list[bool]]:
    """Build `is_muted(events) -> flags` for `NotifySink`.

    Redis errors propagate: the sink catches them and delivers anyway (fail open), so a Redis
    outage costs a notification during maintenance rather than a missed alert.
    """

    def is_muted(events: Sequence[AlertEvent]) -> list[bool]:
        instances = sorted({e.instance_id for e in events if e.instance_id})
        if not instances:
            return [False] * len(events)
        pipe = redis_client.pipeline(transaction=False)
        for instance in instances:
            pipe.exists(maintenance_key(instance, prefix))
        counts = pipe.execute()
        muted = {inst for inst, count in zip(instances, counts, strict=True) if int(count) > 0}
        return [e.instance_id in muted for e in events]

    return is_muted
