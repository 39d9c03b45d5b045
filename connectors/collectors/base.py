"""The collector plugin interface: what a telemetry source must provide to be polled.

A collector is built once per target and polled by `connectors.collectors.source` at the
target's interval. It turns one poll into `Metric`s stamped with the poll time it is given
(`now`: the flow's injected clock, so tests and replays decide what time it is); it never
decides scheduling, retries, `up`, tag policy or output: the flow does, identically for
every database type.

Adding a database type (MongoDB, MSSQL, Snowflake, ...) is one class:

    @register("mongodb")
    class MongoCollector(BaseCollector):
        default_database_type = "mongodb"

        @classmethod
        def check_options(cls, options): ...   # every problem with `type:`-specific keys

        async def collect(self, now): ...      # or a plain `def`: it then runs in a thread

and an import of its module in `connectors/collectors/__init__.py`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from connectors.errors import ConnectorError
from connectors.kafka.topics import metric_topic
from rules.metric import Metric


class CollectorError(ConnectorError):
    """A poll failed (connection refused, timeout, query error); wraps the driver's error.

    The flow reports the *class* of the innermost cause as the `error` tag of `up = 0`
    (bounded cardinality); the message, redacted, only goes to the log.
    """


@dataclass(frozen=True, slots=True)
class Target:
    """One configured thing to poll (a database instance, a host's /proc).

    `options` are the `type:`-specific keys (a DSN, mounts, ...). They may hold secrets, so
    they stay out of `repr` and out of every log line.
    """

    name: str
    type: str
    instance_id: str
    database_type: str
    environment: str
    interval_s: float
    timeout_s: float
    tags: Mapping[str, str] = field(default_factory=dict)  # static, on every sample; has `environment`
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def topic(self) -> str:
        return metric_topic(self.database_type, self.environment)

    def sample(self, now: float, name: str, value: float, tags: Mapping[str, str] | None = None) -> Metric:
        """A `Metric` of this target stamped `now`, with the static tags plus `tags`."""
        merged = {**self.tags, **tags} if tags else dict(self.tags)
        return Metric(now, self.database_type, self.instance_id, name, float(value), merged)


class Collector(Protocol):
    """What the polling source needs from a collector.

    `collect` may be a coroutine function (run on the target's event loop, cancelled on
    timeout) or a plain function (run in a worker thread so a hung syscall cannot stall
    the flow). It raises on failure; `CollectorError` wrapping the driver error is the
    polite way, but any exception only marks this target down.
    """

    @property
    def name(self) -> str: ...

    @property
    def database_type(self) -> str: ...

    def collect(self, now: float) -> list[Metric] | Awaitable[list[Metric]]: ...

    def close(self) -> Awaitable[None] | None: ...


class CollectorClass(Protocol):
    """A registered collector class: validates its options, then builds from a `Target`."""

    default_database_type: str

    def check_options(self, options: Mapping[str, Any]) -> list[str]: ...

    def __call__(self, target: Target) -> Collector: ...


class BaseCollector(ABC):
    """Convenience base: `name` / `database_type` from the target, no-op `close`."""

    default_database_type: ClassVar[str] = ""

    def __init__(self, target: Target) -> None:
        self.target = target

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def database_type(self) -> str:
        return self.target.database_type

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> list[str]:
        """Every problem with the `type:`-specific keys, one line each (empty: valid)."""
        return []

    @abstractmethod
    def collect(self, now: float) -> list[Metric] | Awaitable[list[Metric]]: ...

    def close(self) -> Awaitable[None] | None:
        return None


_REGISTRY: dict[str, CollectorClass] = {}
C = TypeVar("C", bound=type[BaseCollector])


def register(type_name: str) -> Callable[[C], C]:
    """Class decorator: targets with `type: <type_name>` are polled by this class."""

    def add(cls: C) -> C:
        if type_name in _REGISTRY and _REGISTRY[type_name] is not cls:
            raise ValueError(f"collector type {type_name!r} is already registered")
        _REGISTRY[type_name] = cls
        return cls

    return add


def collector_class(type_name: str) -> CollectorClass | None:
    return _REGISTRY.get(type_name)


def registered_types() -> list[str]:
    return sorted(_REGISTRY)


def create_collector(target: Target) -> Collector:
    """The registered collector for `target` (the loader has validated type and options)."""
    cls = _REGISTRY.get(target.type)
    if cls is None:
        raise CollectorError(f"target {target.name!r}: no collector registered for type {target.type!r}")
    return cls(target)


_NOT_NAME = re.compile(r"[^A-Za-z0-9_.]")


def error_class(exc: BaseException) -> str:
    """The tag value for a failed poll: the class name of the innermost cause.

    Class names form a small, fixed set, unlike messages (addresses, ports, query text),
    which would make one series per distinct failure.
    """
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return _NOT_NAME.sub("_", type(exc).__name__)[:64] or "Exception"
