"""Django settings for the console; every deployment choice comes from conf.py's environment variables.

DEBUG is off unless EDGE_INSPECTOR_DEBUG=1: the console runs on factory networks, where a
debug page leaking settings is a real risk.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import conf

PACKAGE_DIR = Path(__file__).resolve().parent
conf.restrict_umask()  # before the first file: database, uploads and job outputs are owner-only
DATA_DIR = conf.data_dir()
SECRET_KEY = conf.secret_key(DATA_DIR)
DEBUG = conf.flag("DEBUG", False)
ALLOWED_HOSTS = conf.path_list(conf.env("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]"))
CSRF_TRUSTED_ORIGINS = conf.path_list(conf.env("CSRF_TRUSTED_ORIGINS"))

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "edge_inspector.console.apps.ConsoleConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a login unless the view is explicitly marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "edge_inspector.console.urls"
WSGI_APPLICATION = "edge_inspector.console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "edge_inspector.console.roles.role_context",
            ],
        },
    },
]

DATABASES = {
    "default": conf.parse_database_url(os.environ.get("DATABASE_URL", "sqlite:///console.sqlite3"), DATA_DIR)
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The verdict subscriber writes while pages read: wait for the lock instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    conf.private_sqlite(Path(DATABASES["default"]["NAME"]))
else:
    # PostgreSQL (plant use): a restarted server must not leave the follower threads on a dead
    # connection, and a server that is away must fail a page in seconds rather than hang it.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"]["OPTIONS"] = {"connect_timeout": 10}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Static files are served by the console itself (views.static_file): no collectstatic step,
# no CDN, and the vendored Bootstrap/Chart.js always match the templates.
STATIC_URL = "/static/"
STATIC_DIR = PACKAGE_DIR / "static"

DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Uploads stream to a temporary file and stop at EDGE_INSPECTOR_MAX_UPLOAD_MB (uploads.py).
FILE_UPLOAD_HANDLERS = ["edge_inspector.console.uploads.LimitedUploadHandler"]
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# ZIP datasets are extracted into the (private) data dir, by the console and by its training jobs alike.
os.environ.setdefault("EDGE_INSPECTOR_CACHE", str(DATA_DIR / "archive-cache"))
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "SAMEORIGIN"  # the model report is shown in an iframe on the model page

# --- behind a TLS reverse proxy ----------------------------------------------------------------------
# The console itself speaks plain HTTP on loopback; a proxy (nginx, Caddy) terminates TLS. HTTPS=1
# marks the session and CSRF cookies Secure and sends HSTS; TRUST_PROXY_HEADER=1 believes the
# proxy's X-Forwarded-Proto (set it only when the proxy overwrites that header, and the console is
# reachable through the proxy alone), so Django knows a request came over TLS.
HTTPS = conf.flag("HTTPS", False)
TRUST_PROXY_HEADER = conf.flag("TRUST_PROXY_HEADER", False)
if TRUST_PROXY_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = conf.integer("HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = conf.flag("HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_SSL_REDIRECT = conf.flag("SSL_REDIRECT", False)

# --- console-specific --------------------------------------------------------------------------
CONSOLE = {
    "ZMQ_ENDPOINT": conf.env("ZMQ", "tcp://127.0.0.1:5556"),
    "MODELS_DIR": Path(conf.env("MODELS_DIR", "models")).expanduser().resolve(),
    "DAEMON_PID_FILE": Path(p).expanduser().resolve() if (p := conf.env("DAEMON_PID_FILE")) else None,
    # Promote edits this config's model slot, then confirms the live model from these metrics.
    "DAEMON_CONFIG": Path(p).expanduser().resolve() if (p := conf.env("DAEMON_CONFIG")) else None,
    "DAEMON_METRICS": conf.env("DAEMON_METRICS", "") or None,
    # How long promote waits for the daemon to report the new model live (a big model loads slowly).
    "PROMOTE_CONFIRM_S": conf.integer("PROMOTE_CONFIRM_S", 30, minimum=1),
    "FRAMES_ROOT": Path(conf.env("FRAMES_ROOT", ".")).expanduser().resolve(),
    "BACKGROUND_VALIDATION": conf.flag("BACKGROUND_VALIDATION", True),
    "KEEP_VERDICTS": conf.integer("KEEP_VERDICTS", 200_000, minimum=100),
    # Verdicts received more than this many days ago are pruned too (0: no age limit).
    "KEEP_DAYS": conf.integer("KEEP_DAYS", 0, minimum=0),
    # The plant broker the console follows every line's daemon through (mqtt_feed.py); no host: off.
    "MQTT": {
        "host": conf.env("MQTT_HOST"),
        "port": conf.integer("MQTT_PORT", 1883, minimum=1),
        "topic_prefix": conf.env("MQTT_TOPIC_PREFIX", "edge-inspector"),
        "client_id": conf.env("MQTT_CLIENT_ID", "edge-inspector-console"),
        "username": conf.env("MQTT_USERNAME"),
        "password_file": conf.env("MQTT_PASSWORD_FILE"),
        "ca_file": conf.env("MQTT_CA_FILE"),
    },
    # The training/evaluation commands, as argv prefixes; overridable so a site can wrap them.
    "TRAIN_COMMAND": conf.env("TRAIN_COMMAND", ""),
    "EVALUATE_COMMAND": conf.env("EVALUATE_COMMAND", ""),
    "UPLOADS_DIR": DATA_DIR / "datasets",
    # Login throttling (login.py): failures per user name and per client address before a lockout.
    "LOGIN_MAX_FAILURES": conf.integer("LOGIN_MAX_FAILURES", 5, minimum=1),
    "LOGIN_MAX_FAILURES_PER_IP": conf.integer("LOGIN_MAX_FAILURES_PER_IP", 50, minimum=1),
    "LOGIN_LOCKOUT_MINUTES": conf.integer("LOGIN_LOCKOUT_MINUTES", 15, minimum=1),
    "TRUST_PROXY_HEADER": TRUST_PROXY_HEADER,
    # Server folders an admin may name: datasets registered by path, and cards imported by path
    # (besides the models dir and the console's own job folders). Nothing outside them is opened.
    "DATASET_ROOTS": [Path(p).expanduser().resolve() for p in conf.path_list(conf.env("DATASET_ROOTS"))],
    "IMPORT_ROOTS": [Path(p).expanduser().resolve() for p in conf.path_list(conf.env("IMPORT_ROOTS"))],
    # What a logged-in user may put on this disk (uploads.py): the request body, a ZIP's members and
    # unpacked size, and everything one user's uploads hold together.
    "MAX_UPLOAD_MB": conf.integer("MAX_UPLOAD_MB", 1024, minimum=1),
    "UPLOAD_QUOTA_MB": conf.integer("UPLOAD_QUOTA_MB", 4096, minimum=1),
    "MAX_ZIP_ENTRIES": conf.integer("MAX_ZIP_ENTRIES", 50_000, minimum=1),
    "MAX_EXTRACTED_MB": conf.integer("MAX_EXTRACTED_MB", 2048, minimum=1),
    "JOBS_DIR": DATA_DIR / "jobs",
}
