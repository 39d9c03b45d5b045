"""Exceptions of the connectors package.

One root (`ConnectorError`) so callers can catch every I/O failure of this package in one
place; `PoisonMessage` is the one failure a flow must survive: the message goes to the
dead-letter topic and the flow goes on.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Root exception of the connectors package (configuration, broker, registry, driver errors)."""


class PoisonMessage(ConnectorError):  # noqa: N818 - names what it is: a message, not a fault of ours
    """A message that can never be decoded or processed, whatever the retries.

    `reason` is short and names the problem (field, rule broken) so that the DLQ record
    tells the producer's owner what to fix without reading our code.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
