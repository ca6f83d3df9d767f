"""``createadmin --username NAME``: password from EDGE_INSPECTOR_ADMIN_PASSWORD or stdin (never argv)."""

import os
import sys

from django.core.management.base import BaseCommand, CommandError

from edge_inspector.console.admin_user import AdminUserError, create_admin


def read_password(stream=None) -> str:
    if password := os.environ.get("EDGE_INSPECTOR_ADMIN_PASSWORD"):
        return password
    stream = stream or sys.stdin
    if stream.isatty():
        import getpass

        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("passwords do not match")
        return first
    return stream.readline().rstrip("\r\n")


class Command(BaseCommand):
    help = "Create (or reset the password of) a console administrator."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", default="")

    def handle(self, *args, **options):
        try:
            user, created = create_admin(options["username"], read_password(), options["email"])
        except AdminUserError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{'created' if created else 'updated'} admin user {user.get_username()}")
