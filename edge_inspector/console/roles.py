"""Console roles: viewer < engineer < admin, kept as Django groups of those names.

The red team (issue 14, F3) logged in as a plain user and imported a card from any server path,
promoted it into the daemon's models folder and started a training job that wrote models three
folders up: no view checked anything beyond the login. Every state-changing view now names the
least role it needs (``@requires(Role.ENGINEER)``):

- **viewer** (any login, the default for a new user): the live line, gallery, datasets, jobs and
  models pages, and marking a verdict as a false alarm (a note for review, nothing on the line);
- **engineer**: uploads datasets, starts and cancels training jobs, reads the audit log;
- **admin** (superusers, or the ``admin`` group): everything that names a server path or changes
  the line: register a dataset folder, import a model card, promote a model into the daemon.

Set a role with ``edge-inspector console manage setrole USER viewer|engineer|admin``.
"""

from __future__ import annotations

import functools
from enum import IntEnum

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


class Role(IntEnum):
    VIEWER = 1
    ENGINEER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"role {text!r}: expected one of {', '.join(r.label for r in cls)}") from None


GROUP_NAMES = {role.label for role in Role}


def role_of(user) -> Role:
    """The user's role: superusers are admins; otherwise the highest role group they are in (viewer if none)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return Role.VIEWER
    if user.is_superuser:
        return Role.ADMIN
    cached = getattr(user, "_console_role", None)
    if cached is None:
        names = set(user.groups.filter(name__in=GROUP_NAMES).values_list("name", flat=True))
        cached = max((Role.parse(n) for n in names), default=Role.VIEWER)
        user._console_role = cached
    return cached


def set_role(user, role: Role) -> None:
    """Put ``user`` in exactly one role group (superusers stay admins whatever the group)."""
    from django.contrib.auth.models import Group

    for name in GROUP_NAMES:
        group, _ = Group.objects.get_or_create(name=name)
        if name == role.label:
            user.groups.add(group)
        else:
            user.groups.remove(group)
    user.__dict__.pop("_console_role", None)


def forbidden(request: HttpRequest, needed: Role) -> HttpResponse:
    have = role_of(request.user)
    return render(request, "console/forbidden.html",
                  {"needed": needed.label, "have": have.label}, status=403)


def requires(needed: Role, *, methods: tuple[str, ...] | None = None):
    """View decorator: 403 (with the role needed) unless the user has at least ``needed``.

    ``methods`` limits the check to those HTTP methods (e.g. only the POST of a page anyone may view).
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if (methods is None or request.method in methods) and role_of(request.user) < needed:
                from .models import audit

                audit(request.user, "access.denied", path=request.path, method=request.method, needed=needed.label)
                return forbidden(request, needed)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def role_context(request: HttpRequest) -> dict:
    """Template context processor: ``console_role`` ("viewer"/"engineer"/"admin") to hide what a user may not do."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    role = role_of(user)
    return {"console_role": role.label, "can_engineer": role >= Role.ENGINEER, "can_admin": role >= Role.ADMIN}
