"""The email receiver against a real SMTP server on 127.0.0.1 (aiosmtpd), with and without
STARTTLS, and as the notification service's fallback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.notify.policy import RetryPolicy
from connectors.notify.receivers import (
    EmailSender,
    OutcomeKind,
    Runtime,
    SenderOptions,
    SmtpConfig,
    notification_service_sender,
)
from rules.routing.types import GroupNotification
from tests.support.events import T0, alert_event, instance_labels
from tests.support.http_capture import CaptureServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.integration

NO_SLEEP = Runtime(sleep=lambda s: None, rand=lambda: 0.5)
OPTIONS = SenderOptions(
    retry=RetryPolicy(max_attempts=3, deadline_s=None), failure_threshold=2, cooldown_s=600
)


@pytest.fixture()
def plain(tmp_path: Path) -> Iterator[SmtpServer]:
    s = SmtpServer(tmp_path)
    yield s
    s.stop()


@pytest.fixture()
def tls(tmp_path: Path) -> Iterator[SmtpServer]:
    s = SmtpServer(tmp_path, tls=True)
    yield s
    s.stop()


def notification() -> GroupNotification:
    alerts = tuple(
        alert_event(
            fingerprint=f"fp-{i}",
            labels=tuple(sorted((*instance_labels(i), ("alertname", "HighCPUUsage")))),
            annotations=(("summary", f"High CPU usage on {i}"),),
            message_id=f"m-{i}",
        )
        for i in ("db-1", "db-2")
    )
    return GroupNotification("mail", "k", (("alertname", "HighCPUUsage"),), alerts, T0 + 1000)


def config(server: SmtpServer, **kw: Any) -> SmtpConfig:
    return SmtpConfig(
        host="127.0.0.1", port=server.port, sender="alerts@example.com", to=("sre@example.com",), **kw
    )


def test_grouped_mail_over_plain_smtp(plain: SmtpServer) -> None:
    n = notification()
    out = EmailSender("mail", config(plain, require_tls=False), OPTIONS, runtime=NO_SLEEP).send(n)
    assert out.delivered
    (msg,) = plain.mailbox.messages
    assert msg["Subject"] == "[FIRING:2] HighCPUUsage"
    assert msg["To"] == "sre@example.com"
    assert msg["Message-ID"] == f"<{n.message_id}@gds-alerting>"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert "High CPU usage on db-1" in text.get_content() and "High CPU usage on db-2" in text.get_content()
    assert "<h3>Firing (2)</h3>" in html.get_content()
    assert plain.mailbox.tls_used == [False]


def test_starttls_when_required(tls: SmtpServer) -> None:
    cfg = config(tls, require_tls=True, tls_context=tls.client_context())
    out = EmailSender("mail", cfg, OPTIONS, runtime=NO_SLEEP).send(notification())
    assert out.delivered
    assert tls.mailbox.tls_used == [True]


def test_require_tls_refuses_a_server_without_starttls(plain: SmtpServer) -> None:
    out = EmailSender("mail", config(plain, require_tls=True), OPTIONS, runtime=NO_SLEEP).send(notification())
    assert out.kind is OutcomeKind.REJECTED
    assert "STARTTLS" in out.error
    assert plain.mailbox.messages == []


def test_smtp_4xx_is_retried_and_5xx_rejected(plain: SmtpServer) -> None:
    sender = EmailSender("mail", config(plain, require_tls=False), OPTIONS, runtime=NO_SLEEP)
    plain.mailbox.replies.append("451 4.3.0 Try again later")
    assert sender.send(notification()).delivered
    assert len(plain.mailbox.messages) == 1
    plain.mailbox.replies.append("550 5.7.1 Relaying denied")
    out = sender.send(notification())
    assert out.kind is OutcomeKind.REJECTED and "550" in out.error
    assert len(plain.mailbox.messages) == 1


def test_smtp_server_down_is_retry_later(plain: SmtpServer) -> None:
    cfg = config(plain, require_tls=False)
    plain.stop()
    out = EmailSender("mail", cfg, OPTIONS, runtime=NO_SLEEP).send(notification())
    assert out.kind is OutcomeKind.RETRY_LATER


def test_email_is_the_notification_services_fallback(plain: SmtpServer) -> None:
    service = CaptureServer()
    service.script.default = "503"
    try:
        mail = EmailSender("mail", config(plain, require_tls=False), OPTIONS, runtime=NO_SLEEP)
        primary = notification_service_sender(
            "service", service.url, options=OPTIONS, fallback=mail, runtime=NO_SLEEP
        )
        out = primary.send(notification())
        assert out.delivered and out.via_fallback and out.receiver == "mail"
        assert len(plain.mailbox.messages) == 1
    finally:
        service.stop()
