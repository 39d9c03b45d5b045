"""A real SMTP server on 127.0.0.1 (aiosmtpd) for the email receiver's tests.

It records each accepted message and can answer DATA from a script ("ok", or a full SMTP reply
such as "451 4.3.0 try again later" / "550 5.7.1 rejected"). With `tls=True` it offers STARTTLS
with a throw-away self-signed certificate; `client_context()` trusts exactly that certificate.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    replies: deque[str] = field(default_factory=deque)  # per DATA, in order; then "ok"
    messages: list[EmailMessage] = field(default_factory=list)
    tls_used: list[bool] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        with self.lock:
            reply = self.replies.popleft() if self.replies else "ok"
            if reply != "ok":
                return reply
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append(msg)
            self.tls_used.append(session.ssl is not None)
        return "250 Message accepted for delivery"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    def __init__(self, tmp: Path, *, tls: bool = False) -> None:
        self.mailbox = Mailbox()
        self.port = _free_port()
        self._cert: Path | None = None
        server_ctx: ssl.SSLContext | None = None
        if tls:
            self._cert, key = _self_signed(tmp)
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(self._cert, key)
        self.controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=server_ctx,
            require_starttls=tls,
        )
        self.controller.start()
        self._running = True

    def client_context(self) -> ssl.SSLContext:
        assert self._cert is not None, "server started without tls"
        return ssl.create_default_context(cafile=str(self._cert))

    def stop(self) -> None:
        if self._running:
            self._running = False
            self.controller.stop()
