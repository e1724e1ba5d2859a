"""Sign-up, account settings and invitations. Every email goes out through a job."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.forms import EmailChangeForm, InvitationForm, QueuedPasswordResetForm, SignUpForm
from django_qstash_jobs.emails import (
    send_email_change_email_async,
    send_password_changed_email_async,
    send_team_invitation_email_async,
)
from django_qstash_jobs.models import JobExecution

# The example has a single team; a real site would take the inviter's organisation.
ORGANIZATION_ID = 1
ORGANIZATION_NAME = "Acme Corp"
EMAIL_CHANGE_SALT = "accounts.email-change"
EMAIL_CHANGE_MAX_AGE = 2 * 24 * 3600


def _name(user: Any) -> str:
    return str(user.get_short_name() or user.get_username())


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    # An invitation link carries the address it was sent to.
    form = SignUpForm(request.POST or None, initial={"email": request.GET.get("email", "")})
    if request.method == "POST" and form.is_valid():
        # The welcome email is not sent here: accounts.signals enqueues it for every new user.
        user = form.save()
        login(request, user)
        messages.success(request, f"Welcome, {_name(user)}! A welcome email is on its way.")
        return redirect("accounts:account")
    return render(request, "accounts/signup.html", {"form": form})


@login_required
def account(request: HttpRequest) -> HttpResponse:
    jobs = JobExecution.objects.filter(user_id=str(request.user.pk)).order_by("-created_at")[:10]
    subscription = getattr(request.user, "subscription", None)
    return render(request, "accounts/account.html", {"jobs": jobs, "subscription": subscription})


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/form.html"
    success_url = reverse_lazy("accounts:account")
    extra_context = {"title": "Change your password", "submit": "Change password"}

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        user = self.request.user
        if user.email:  # createsuperuser may leave it blank
            send_password_changed_email_async(
                {
                    "to": user.email,
                    "recipient_name": _name(user),
                    "product_name": settings.PRODUCT_NAME,
                    "changed_at": timezone.now().strftime("%d %B %Y at %H:%M UTC"),
                    "support_url": self.request.build_absolute_uri(
                        reverse("accounts:password_reset")
                    ),
                },
                {"user_id": user.pk},
            )
        messages.success(self.request, "Your password was changed.")
        return response
        send_password_changed_email_async(
            {
                "to": user.email,
                "recipient_name": _name(user),
                "product_name": settings.PRODUCT_NAME,
                "changed_at": timezone.now().strftime("%d %B %Y at %H:%M UTC"),
                "support_url": self.request.build_absolute_uri(reverse("accounts:password_reset")),
            },
            {"user_id": user.pk},
        )
        messages.success(self.request, "Your password was changed; we emailed you about it.")
        return response


@login_required
@require_http_methods(["GET", "POST"])
def change_email(request: HttpRequest) -> HttpResponse:
    form = EmailChangeForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        new_email = form.cleaned_data["email"]
        # The address changes only when its owner follows the link: a signed, expiring token.
        token = signing.dumps({"user": request.user.pk, "email": new_email}, salt=EMAIL_CHANGE_SALT)
        send_email_change_email_async(
            {
                "to": new_email,
                "recipient_name": _name(request.user),
                "product_name": settings.PRODUCT_NAME,
                "new_email": new_email,
                "confirmation_url": request.build_absolute_uri(
                    reverse("accounts:confirm_email", args=[token])
                ),
            },
            {"user_id": request.user.pk},
        )
        messages.success(request, f"We sent a confirmation link to {new_email}.")
        return redirect("accounts:account")
    context = {"form": form, "title": "Change your email address", "submit": "Send the link"}
    return render(request, "accounts/form.html", context)


@login_required
def confirm_email(request: HttpRequest, token: str) -> HttpResponse:
    try:
        data = signing.loads(token, salt=EMAIL_CHANGE_SALT, max_age=EMAIL_CHANGE_MAX_AGE)
    except signing.BadSignature:
        messages.error(request, "This link is invalid or has expired.")
        return redirect("accounts:account")
    if data["user"] != request.user.pk:
        messages.error(request, "This link was sent to another account.")
        return redirect("accounts:account")
    request.user.email = data["email"]
    request.user.save(update_fields=["email"])
    messages.success(request, f"Your email address is now {data['email']}.")
    return redirect("accounts:account")


@login_required
@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest) -> HttpResponse:
    form = InvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        signup_url = reverse("accounts:signup") + "?" + urlencode({"email": email})
        send_team_invitation_email_async(
            {
                "to": email,
                "recipient_name": form.cleaned_data["name"],
                "inviter_name": _name(request.user),
                "organization_name": ORGANIZATION_NAME,
                "product_name": settings.PRODUCT_NAME,
                "invitation_url": request.build_absolute_uri(signup_url),
                "role": form.cleaned_data["role"],
            },
            {"user_id": request.user.pk, "organization_id": ORGANIZATION_ID},
        )
        messages.success(request, f"{email} is invited to {ORGANIZATION_NAME}.")
        return redirect("accounts:account")
    context = {
        "form": form,
        "title": f"Invite someone to {ORGANIZATION_NAME}",
        "submit": "Send the invitation",
    }
    return render(request, "accounts/form.html", context)


class PasswordResetView(auth_views.PasswordResetView):
    form_class = QueuedPasswordResetForm
    template_name = "accounts/form.html"
    success_url = reverse_lazy("accounts:password_reset_done")
    extra_context = {
        "title": "Forgot your password?",
        "intro": "We will email you a link to choose a new one.",
        "submit": "Email me a link",
    }


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("accounts:login")

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, "Your password is changed: log in with it.")
        return super().form_valid(form)
