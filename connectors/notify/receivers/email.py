"""Email over SMTP (Alertmanager's `email_config`): one grouped message per notification.

smtplib, one connection per message (alert email is rare; a kept-open SMTP session times out
between alerts anyway). STARTTLS when `require_tls` (Alertmanager's default): a server that does
not offer it is a configuration error and the message is REJECTED rather than sent in clear.
Verdicts: SMTP 4xx replies, dropped connections and network errors are transient; 5xx replies
(and a failed login) are permanent. `Message-ID` is derived from the notification's message_id,
so a re-send of the same notification is recognisably the same mail.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from connectors.notify.policy import NotifyError, Verdict
from connectors.notify.receivers.base import GuardedSender, Runtime, Sender, SenderOptions, Try, describe
from rules.routing import payloads
from rules.routing.types import GroupNotification


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """`smarthost` split into host and port, `from`, `to`, auth and TLS."""

    host: str
    port: int
    sender: str  # From:
    to: tuple[str, ...]
    require_tls: bool = True
    username: str = ""
    password: str = field(default="", repr=False)
    timeout_s: float = 10.0
    hello: str = ""  # EHLO name; empty: the local host name
    tls_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)  # default: system CAs

    def __post_init__(self) -> None:
        if not self.to:
            raise NotifyError("email receiver: `to` needs at least one address")
        if not self.sender:
            raise NotifyError("email receiver: `from` is required")
        if self.username and not self.require_tls:
            raise NotifyError("email receiver: refusing to send a password without TLS (set require_tls)")


def build_message(n: GroupNotification, config: SmtpConfig) -> EmailMessage:
    content = payloads.email_content(n)
    msg = EmailMessage()
    msg["Subject"] = content.subject
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(n.at, UTC))
    msg["Message-ID"] = f"<{content.message_id}@gds-alerting>"
    msg["X-GDS-Message-Id"] = content.message_id
    msg.set_content(content.text)
    msg.add_alternative(content.html, subtype="html")
    return msg


def smtp_verdict(code: int) -> Verdict:
    if 200 <= code < 400:
        return Verdict.DELIVERED
    return Verdict.RETRY if 400 <= code < 500 else Verdict.REJECT


class EmailSender(GuardedSender[EmailMessage]):
    def __init__(
        self,
        name: str,
        config: SmtpConfig,
        options: SenderOptions | None = None,
        *,
        fallback: Sender | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(name, options, fallback=fallback, runtime=runtime)
        self.config = config

    def parts(self, n: GroupNotification) -> list[EmailMessage]:
        return [build_message(n, self.config)]

    def attempt(self, part: EmailMessage) -> Try:
        c = self.config
        try:
            with smtplib.SMTP(c.host, c.port, local_hostname=c.hello or None, timeout=c.timeout_s) as smtp:
                smtp.ehlo()
                if c.require_tls:
                    if not smtp.has_extn("starttls"):
                        return Try(
                            Verdict.REJECT,
                            f"{c.host}:{c.port} offers no STARTTLS and require_tls is set",
                            about_server=False,
                        )
                    smtp.starttls(context=c.tls_context or ssl.create_default_context())
                    smtp.ehlo()
                if c.username:
                    smtp.login(c.username, c.password)
                refused = smtp.send_message(part, from_addr=c.sender, to_addrs=list(c.to))
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            codes = [code for code, _ in exc.recipients.values()]
            verdict = Verdict.RETRY if any(400 <= code < 500 for code in codes) else Verdict.REJECT
            return Try(verdict, f"recipients refused: {exc.recipients}")
        except smtplib.SMTPAuthenticationError as exc:
            return Try(Verdict.REJECT, f"login failed: {describe(exc)}")
        except smtplib.SMTPResponseException as exc:
            return Try(smtp_verdict(exc.smtp_code), f"SMTP {exc.smtp_code}: {exc.smtp_error!r}")
        except ssl.SSLError as exc:  # certificate or protocol: configuration, not an outage
            return Try(Verdict.REJECT, f"TLS: {describe(exc)}", about_server=False)
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, refused, timeouts
            return Try(Verdict.RETRY, describe(exc))
        if refused:  # some recipients took it: delivered; say who did not
            return Try(Verdict.DELIVERED, f"refused by some recipients: {refused}")
        return Try(Verdict.DELIVERED)
