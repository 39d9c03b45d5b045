"""Redis maintenance flags (`maintenance:{instance_id}`) as the notify sink's `is_muted` hook.

Operators set the key (usually with a TTL, `SET maintenance:prod-db-01 1 EX 3600`) to mute
notifications for an instance; the alert transitions are still recorded. One pipelined round trip
per batch, with EXISTS once per distinct instance, because the check sits on the delivery path
of every batch.

Redis is optional here, so it may never hold delivery up: the client has short socket timeouts
(`redis_client`), and after a failure the checker does not ask Redis again for `cooldown_s`
(it raises at once). The sink treats a failed check as "maintenance unknown" and delivers: a Redis
outage costs at worst a notification during maintenance, never a missed alert.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import redis

from connectors.errors import ConnectorError
from rules.model import AlertEvent

MAINTENANCE_PREFIX = "maintenance:"
REDIS_TIMEOUT_S = 0.5
"""Connect and read timeout of the maintenance client: a hung Redis costs this, once per cooldown."""
REDIS_COOLDOWN_S = 30.0


def redis_client(url: str, timeout_s: float = REDIS_TIMEOUT_S) -> redis.Redis:
    """A client that gives up quickly: redis-py waits for ever by default."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def maintenance_key(instance_id: str, prefix: str = MAINTENANCE_PREFIX) -> str:
    return f"{prefix}{instance_id}"


def redis_maintenance_checker(
    redis_client: redis.Redis,
    prefix: str = MAINTENANCE_PREFIX,
    *,
    cooldown_s: float = REDIS_COOLDOWN_S,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[Sequence[AlertEvent]], list[bool]]:
    """Build `is_muted(events) -> flags` for `NotifySink`.

    Redis errors propagate: the sink catches them and delivers anyway (fail open). After one,
    Redis is left alone for `cooldown_s` (the check raises at once) so a hung server costs one
    timeout per cooldown, not one per batch.
    """
    failed_at = [-float("inf")]

    def is_muted(events: Sequence[AlertEvent]) -> list[bool]:
        instances = sorted({e.instance_id for e in events if e.instance_id})
        if not instances:
            return [False] * len(events)
        if clock() - failed_at[0] < cooldown_s:
            raise ConnectorError(f"redis maintenance check skipped for {cooldown_s:g}s after a failure")
        pipe = redis_client.pipeline(transaction=False)
        for instance in instances:
            pipe.exists(maintenance_key(instance, prefix))
        try:
            counts = pipe.execute()
        except redis.RedisError:
            failed_at[0] = clock()
            raise
        muted = {inst for inst, count in zip(instances, counts, strict=True) if int(count) > 0}
        return [e.instance_id in muted for e in events]

    return is_muted
