"""Start the console: configure Django from flags, migrate, start the subscriber and job monitor, serve.

The web server is waitress (a production WSGI server, pure Python, no compiler needed on a
Jetson), never Django's runserver.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)

# flag name -> environment variable read by conf.py / settings.py
FLAG_ENV = {
    "data_dir": "EDGE_INSPECTOR_DATA_DIR",
    "zmq": "EDGE_INSPECTOR_ZMQ",
    "models_dir": "EDGE_INSPECTOR_MODELS_DIR",
    "daemon_pid_file": "EDGE_INSPECTOR_DAEMON_PID_FILE",
    "daemon_config": "EDGE_INSPECTOR_DAEMON_CONFIG",
    "daemon_metrics": "EDGE_INSPECTOR_DAEMON_METRICS",
    "frames_root": "EDGE_INSPECTOR_FRAMES_ROOT",
    "keep_verdicts": "EDGE_INSPECTOR_KEEP_VERDICTS",
    "keep_days": "EDGE_INSPECTOR_KEEP_DAYS",
    "mqtt_host": "EDGE_INSPECTOR_MQTT_HOST",
    "mqtt_port": "EDGE_INSPECTOR_MQTT_PORT",
    "mqtt_prefix": "EDGE_INSPECTOR_MQTT_TOPIC_PREFIX",
    "mqtt_client_id": "EDGE_INSPECTOR_MQTT_CLIENT_ID",
    "mqtt_username": "EDGE_INSPECTOR_MQTT_USERNAME",
    "mqtt_password_file": "EDGE_INSPECTOR_MQTT_PASSWORD_FILE",
    "mqtt_ca_file": "EDGE_INSPECTOR_MQTT_CA_FILE",
}
PATH_FLAGS = {"data_dir", "models_dir", "daemon_pid_file", "daemon_config", "frames_root", "mqtt_password_file",
              "mqtt_ca_file"}


def configure(**flags) -> None:
    """Turn CLI flags into the environment settings.py reads, then set Django up (once per process)."""
    for name, var in FLAG_ENV.items():
        value = flags.get(name)
        if value not in (None, ""):
            os.environ[var] = str(Path(value).expanduser().resolve()) if name in PATH_FLAGS else str(value)
    host = flags.get("host")
    if host and host not in ("0.0.0.0", "::") and "EDGE_INSPECTOR_ALLOWED_HOSTS" not in os.environ:
        os.environ["EDGE_INSPECTOR_ALLOWED_HOSTS"] = ",".join(dict.fromkeys([host, "127.0.0.1", "localhost", "[::1]"]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edge_inspector.console.settings")
    import django

    django.setup()


def migrate(verbosity: int = 0) -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=verbosity)


def serve(host: str, port: int, threads: int = 8) -> int:
    """Migrate, recover jobs, start background threads, then block in waitress until interrupted."""
    import waitress
    from django.conf import settings

    from . import jobs
    from .subscriber import VerdictSubscriber
    from .wsgi import application

    migrate()
    jobs.recover()
    from . import subscriber as subscriber_module

    retention = subscriber_module.Retention.from_settings()
    feeds = start_mqtt_feed(retention)  # first: a bad MQTT setting stops the start before anything runs
    subscriber = VerdictSubscriber(settings.CONSOLE["ZMQ_ENDPOINT"], retention=retention)
    subscriber.start()
    subscriber_module.ACTIVE = subscriber
    monitor = jobs.JobMonitor()
    monitor.start()
    log.info(
        "starting console on http://%s:%d/ (data %s, verdicts from %s, models dir %s)",
        host, port, settings.DATA_DIR, ", ".join([settings.CONSOLE["ZMQ_ENDPOINT"], *(f.cfg.endpoint for f in feeds)]),
        settings.CONSOLE["MODELS_DIR"],
    )
    def on_term(signum, frame):  # noqa: ARG001 - systemd stop: leave waitress, flush pending verdicts
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        # A body over the upload limit is refused by waitress (413) before it is buffered to disk.
        body_limit = (settings.CONSOLE["MAX_UPLOAD_MB"] + 1) << 20
        waitress.serve(application, host=host, port=port, threads=threads, ident="edge-inspector-console",
                       max_request_body_size=body_limit)
    finally:
        subscriber.stop()
        for feed in feeds:
            feed.stop()
        monitor.stop()
    return 0


def start_mqtt_feed(retention) -> list:
    """The plant follower (mqtt_feed.py) when a broker is configured; registered for the dashboard."""
    from django.conf import settings

    from . import subscriber as subscriber_module
    from .conf import ConsoleConfigError
    from .mqtt_feed import MqttFeedConfig, MqttFeedError, MqttVerdictSubscriber

    try:
        cfg = MqttFeedConfig.from_settings(settings.CONSOLE)
    except MqttFeedError as exc:
        raise ConsoleConfigError(str(exc)) from None
    if cfg is None:
        return []
    from edge_inspector.publishers.base import PublisherError

    feed = MqttVerdictSubscriber(cfg, retention=retention)
    try:
        feed.start()
    except PublisherError as exc:  # unreadable password file, bad CA file
        raise ConsoleConfigError(f"console MQTT settings (--mqtt-password-file, --mqtt-ca-file or "
                                 f"EDGE_INSPECTOR_MQTT_*): {exc}") from None
    subscriber_module.FEEDS.append(feed)
    return [feed]
