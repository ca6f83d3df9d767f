"""``unlock USER`` (or ``unlock --ip ADDRESS``): end a login lockout now instead of waiting for it to age out."""

from django.core.management.base import BaseCommand, CommandError

from edge_inspector.console.models import LoginFailure, audit


class Command(BaseCommand):
    help = "Forget the failed logins of a user name or client address, ending its lockout (see login.py)."

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?", default="")
        parser.add_argument("--ip", default="", help="a client address instead of (or as well as) a user name")

    def handle(self, username="", ip="", **options):
        if not username and not ip:
            raise CommandError("name a user, or --ip ADDRESS")
        removed = 0
        if username:
            removed += LoginFailure.objects.filter(username=username).delete()[0]
        if ip:
            removed += LoginFailure.objects.filter(ip=ip).delete()[0]
        audit(None, "user.unlock", username=username, ip=ip, failures=removed)
        self.stdout.write(f"unlocked {username or ip}: {removed} failed login(s) forgotten")
