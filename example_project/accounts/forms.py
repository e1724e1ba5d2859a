from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordResetForm, UserCreationForm
from django.urls import reverse

from django_qstash_jobs.emails import send_password_reset_email_async


class SignUpForm(UserCreationForm):
    email = forms.EmailField()
    first_name = forms.CharField(label="First name", max_length=150)

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "first_name", "email")


class QueuedPasswordResetForm(PasswordResetForm):
    """Django's password reset, with the email sent by a job instead of during the request."""

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        # Called once per matching account; an unknown address calls nothing, and the view
        # answers the same either way, so the form does not reveal who has an account.
        user = context["user"]
        path = reverse(
            "accounts:password_reset_confirm",
            kwargs={"uidb64": context["uid"], "token": context["token"]},
        )
        send_password_reset_email_async(
            {
                "to": to_email,
                "recipient_name": user.get_short_name() or user.get_username(),
                "product_name": settings.PRODUCT_NAME,
                "reset_url": f"{context['protocol']}://{context['domain']}{path}",
                "expires_in": "3 days",  # PASSWORD_RESET_TIMEOUT's default
            },
            {"user_id": user.pk},
        )


class EmailChangeForm(forms.Form):
    email = forms.EmailField(label="New email address")

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"]
        if email.lower() == (self.user.email or "").lower():
            raise forms.ValidationError("This is already your address.")
        return email


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Their email address")
    name = forms.CharField(label="Their name", max_length=200, required=False)
    role = forms.ChoiceField(choices=[("member", "Member"), ("admin", "Admin")])
