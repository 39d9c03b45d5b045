"""Telemetry collectors (I/O): one class per `type:` of target, see `base.py`.

Importing the package registers the built-in types; a new type registers itself with
`@register("name")` and is imported here.
"""

from __future__ import annotations

from connectors.collectors import os as os
from connectors.collectors import postgres as postgres
from connectors.collectors.base import (
    BaseCollector,
    Collector,
    CollectorClass,
    CollectorError,
    Target,
    collector_class,
    create_collector,
    error_class,
    register,
    registered_types,
)
from connectors.collectors.redact import redact

__all__ = [
    "BaseCollector",
    "Collector",
    "CollectorClass",
    "CollectorError",
    "Target",
    "collector_class",
    "create_collector",
    "error_class",
    "redact",
    "register",
    "registered_types",
]
