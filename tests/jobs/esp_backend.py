"""django-anymail's test backend, with ids that look like an ESP's (needs django-anymail)."""

from __future__ import annotations

from anymail.backends.test import EmailBackend as AnymailTestBackend
from django.core.mail import EmailMessage


class EspBackend(AnymailTestBackend):
    """Records to ``mail.outbox`` and reports ``esp-<n>`` as each message's ESP id."""

    def get_esp_message_id(self, message: EmailMessage) -> str:
        return f"esp-{super().get_esp_message_id(message)}"
