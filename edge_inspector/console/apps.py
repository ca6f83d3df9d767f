"""Django app registration for the console."""

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "edge_inspector.console"
    label = "console"
    verbose_name = "edge-inspector console"
    default_auto_field = "django.db.models.BigAutoField"
