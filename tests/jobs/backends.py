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
    """

    failures: ClassVar[dict[str, int]] = {}
    refused: ClassVar[set[str]] = set()
    #: One per connection the code under test opened.
    connections: ClassVar[int] = 0
    #: Recipient of each message the backend was asked to send, sent or not.
    attempts: ClassVar[list[str]] = []

    @classmethod
    def reset(cls) -> None:
        cls.failures, cls.refused, cls.connections, cls.attempts = {}, set(), 0, []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        type(self).connections += 1

    def send_messages(self, messages: Sequence[EmailMessage]) -> int:
        for message in messages:
            recipient = message.to[0]
            type(self).attempts.append(recipient)
            if recipient in self.refused:
                raise smtplib.SMTPRecipientsRefused({recipient: (550, b"No such user")})
            if self.failures.get(recipient, 0) > 0:
                self.failures[recipient] -= 1
                raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)
