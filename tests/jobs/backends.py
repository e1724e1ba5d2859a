"""An email backend for the tests that fails on demand."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from typing import Any, ClassVar

from django.core.mail import EmailMessage
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend


class FlakyBackend(LocmemBackend):
    """locmem, but sending to an address in ``failures`` raises that many times first.

    ``refused`` addresses are refused for good, as an SMTP server does with a 550.
    ``login_failures`` connections fail to open first, as with a wrong password; with
    ``sender_refused`` the server refuses the sender of every message.
    """

    failures: ClassVar[dict[str, int]] = {}
    refused: ClassVar[set[str]] = set()
    login_failures: ClassVar[int] = 0
    sender_refused: ClassVar[bool] = False
    #: One per connection the code under test opened.
    connections: ClassVar[int] = 0
    #: Recipient of each message the backend was asked to send, sent or not.
    attempts: ClassVar[list[str]] = []

    @classmethod
    def reset(cls) -> None:
        cls.failures, cls.refused, cls.connections, cls.attempts = {}, set(), 0, []
        cls.login_failures, cls.sender_refused = 0, False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        type(self).connections += 1

    def open(self) -> bool:
        if self.login_failures > 0:
            type(self).login_failures -= 1
            raise smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication credentials invalid")
        return True

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        for message in messages:
            recipient = message.to[0]
            type(self).attempts.append(recipient)
            if self.sender_refused:
                raise smtplib.SMTPSenderRefused(553, b"Sender address rejected", message.from_email)
            if recipient in self.refused:
                raise smtplib.SMTPRecipientsRefused({recipient: (550, b"No such user")})
            if self.failures.get(recipient, 0) > 0:
                self.failures[recipient] -= 1
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)
