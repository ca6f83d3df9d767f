"""``setrole USER viewer|engineer|admin``: give a console user a role (see edge_inspector/console/roles.py)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from edge_inspector.console.models import audit
from edge_inspector.console.roles import Role, role_of, set_role


class Command(BaseCommand):
    help = "Set a console user's role: viewer (read, mark false alarms), engineer (upload, train), admin."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("role", help="viewer, engineer or admin")
        parser.add_argument("--create", action="store_true",
                            help="create the user if missing (password from EDGE_INSPECTOR_ADMIN_PASSWORD or stdin)")

    def handle(self, username, role, create=False, **options):
        try:
            wanted = Role.parse(role)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create:
                raise CommandError(f"user {username!r} does not exist (add --create to create it)")
            from django.contrib.auth.password_validation import validate_password
            from django.core.exceptions import ValidationError

            from .createadmin import read_password

            password = read_password()
            user = User(username=username)
            try:
                validate_password(password, user)
            except ValidationError as exc:
                raise CommandError("password: " + " ".join(exc.messages)) from exc
            user.set_password(password)
            user.save()
        if user.is_superuser and wanted < Role.ADMIN:
            raise CommandError(f"{username} is a superuser (always admin); remove superuser status first")
        set_role(user, wanted)
        audit(None, "user.set_role", username=username, role=wanted.label)
        self.stdout.write(f"{username}: {role_of(user).label}")
