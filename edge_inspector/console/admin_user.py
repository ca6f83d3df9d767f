"""Create or update the console's admin user (used by the CLI and the ``createadmin`` management command)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from .models import audit


class AdminUserError(ValueError):
    """The user name or password is not acceptable; the message says why."""


def create_admin(username: str, password: str, email: str = "") -> tuple[object, bool]:
    """Create a superuser, or reset the password of an existing one; returns (user, created)."""
    username = username.strip()
    if not username:
        raise AdminUserError("--username: must not be empty")
    if not password:
        raise AdminUserError("password: empty (pass it on stdin or in EDGE_INSPECTOR_ADMIN_PASSWORD)")
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    created = user is None
    if created:
        user = User(username=username, email=email)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise AdminUserError("password: " + " ".join(exc.messages)) from exc
    user.is_staff = user.is_superuser = user.is_active = True
    if email:
        user.email = email
    user.set_password(password)
    user.save()
    audit(None, "user.create_admin" if created else "user.reset_admin", username=username)
    return user, created
