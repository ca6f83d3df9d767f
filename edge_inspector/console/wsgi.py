"""WSGI entry point (waitress serves it via ``edge-inspector console``; any WSGI server can)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edge_inspector.console.settings")
application = get_wsgi_application()
