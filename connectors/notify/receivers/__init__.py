"""Receivers: one `Sender` per receiver kind (HTTP kinds in http.py, email in email.py), sharing the
retry / breaker / in-flight / rate-limit / fallback guard and the `Outcome` of base.py.

Use: build one sender per configured receiver (`webhook_sender(...)`, `EmailSender(...)`, ...),
call `send(notification)` and act on `outcome.kind`: DELIVERED (done), RETRY_LATER (keep it as
backlog and send again), REJECTED (dead-letter it). `close()` at shutdown.
"""

from connectors.notify.receivers.base import (
    GuardedSender,
    Outcome,
    OutcomeKind,
    Runtime,
    Sender,
    SenderOptions,
    Try,
)
from connectors.notify.receivers.email import EmailSender, SmtpConfig
from connectors.notify.receivers.http import (
    HttpRequest,
    HttpSender,
    alertmanager_sender,
    notification_service_sender,
    pagerduty_sender,
    slack_sender,
    webhook_sender,
)

__all__ = [
    "EmailSender",
    "GuardedSender",
    "HttpRequest",
    "HttpSender",
    "Outcome",
    "OutcomeKind",
    "Runtime",
    "Sender",
    "SenderOptions",
    "SmtpConfig",
    "Try",
    "alertmanager_sender",
    "notification_service_sender",
    "pagerduty_sender",
    "slack_sender",
    "webhook_sender",
]
