"""Login throttling and lockout, and an audit row for every login, failed login and logout.

The red team found no limit on password guesses and no trace of failed logins (issue 14, Low).
A user name with ``LOGIN_MAX_FAILURES`` failures within ``LOGIN_LOCKOUT_MINUTES`` is locked until
the oldest of them ages out, even for the right password; one client address gets
``LOGIN_MAX_FAILURES_PER_IP`` before it is locked the same way (guessing many names). Failures are
rows in the database, so a console restart does not reset them. While locked, attempts are
refused without checking the password and are not counted again, so the lock ends on time.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth import user_logged_in, user_logged_out
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.dispatch import receiver
from django.utils import timezone

from .models import LoginFailure, audit


def client_ip(request) -> str:
    """The client address: REMOTE_ADDR, or the proxy's last X-Forwarded-For hop when the proxy is trusted."""
    if settings.CONSOLE.get("TRUST_PROXY_HEADER") and (forwarded := request.META.get("HTTP_X_FORWARDED_FOR")):
        return forwarded.split(",")[-1].strip()[:64]
    return str(request.META.get("REMOTE_ADDR", ""))[:64]


def locked_for(username: str, ip: str) -> timedelta | None:
    """How long the user name or address stays locked, or None when it may try."""
    c = settings.CONSOLE
    window = timedelta(minutes=c["LOGIN_LOCKOUT_MINUTES"])
    now = timezone.now()
    recent = LoginFailure.objects.filter(created_at__gte=now - window)
    longest = None
    for field, value, limit in (("username", username, c["LOGIN_MAX_FAILURES"]),
                                ("ip", ip, c["LOGIN_MAX_FAILURES_PER_IP"])):
        if not value:
            continue
        times = list(recent.filter(**{field: value}).order_by("-created_at")
                     .values_list("created_at", flat=True)[:limit])
        if len(times) >= limit:
            remaining = times[limit - 1] + window - now
            longest = remaining if longest is None else max(longest, remaining)
    return longest


class ThrottledAuthenticationForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Wrong user name or password.",
        "locked": "Too many failed logins for this account or address: try again in %(minutes)d minute(s).",
    }

    def clean(self):
        username = (self.cleaned_data.get("username") or "")[:150]
        ip = client_ip(self.request)
        wait = locked_for(username, ip)
        if wait is not None:
            minutes = max(1, int(wait.total_seconds() // 60) + 1)
            audit(None, "user.login_locked", username=username, ip=ip, minutes=minutes)
            raise forms.ValidationError(self.error_messages["locked"], code="locked", params={"minutes": minutes})
        try:
            return super().clean()
        except forms.ValidationError:
            LoginFailure.objects.create(username=username, ip=ip)
            audit(None, "user.login_failed", username=username, ip=ip)
            raise


class ConsoleLoginView(LoginView):
    template_name = "console/login.html"
    authentication_form = ThrottledAuthenticationForm


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):  # noqa: ARG001 - signal signature
    LoginFailure.objects.filter(username=user.get_username()).delete()
    audit(user, "user.login", ip=client_ip(request) if request is not None else "")


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):  # noqa: ARG001 - signal signature
    if user is not None:
        audit(user, "user.logout")
