"""``edge-inspector console``: the web console (Django + waitress), its own process beside the daemon.

``edge-inspector console [--host H] [--port P] [--data-dir D] [--zmq URL] [--mqtt-host BROKER]
[--models-dir M] [--daemon-pid-file F]`` serves; ``edge-inspector console createadmin --username U`` creates the
login (password from stdin or EDGE_INSPECTOR_ADMIN_PASSWORD); ``edge-inspector console manage
ARGS`` runs any Django management command against the same settings.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "console",
        help="web console: live verdicts, defect gallery, datasets, training, model comparison and promotion",
        description=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--data-dir", help="database, secret key, uploads, jobs (default ~/.local/share/edge-inspector)")
    p.add_argument("--zmq", help="daemon's ZeroMQ PUB endpoint (default tcp://127.0.0.1:5556)")
    p.add_argument("--models-dir", help="the daemon's models folder that 'promote' copies into (default models/)")
    p.add_argument("--daemon-pid-file", help="pid file of the daemon, signalled with SIGHUP after a promotion")
    p.add_argument("--daemon-config", help="the daemon's config.yaml: promote points one of its model slots at the "
                   "promoted card (validated, written atomically) so the reload really loads it")
    p.add_argument("--daemon-metrics", help="the daemon's metrics URL (e.g. http://127.0.0.1:9108/metrics): promote "
                   "marks a model deployed only once the daemon reports it live there; also the daemon's liveness")
    p.add_argument("--frames-root", help="folder the verdicts' image paths are relative to: the parent of the "
                   "daemon's frames dir (default: current dir)")
    p.add_argument("--keep-verdicts", type=int, help="verdicts kept in the database, oldest pruned (default 200000)")
    p.add_argument("--keep-days", type=int, help="also prune verdicts received more than N days ago (default 0: "
                   "no age limit; rows marked for review are kept)")
    plant = p.add_argument_group("plant: follow every line's daemon through an MQTT broker (docs/plant.md)")
    plant.add_argument("--mqtt-host", help="broker host; the console subscribes to <prefix>/+/+/verdict and "
                       "<prefix>/+/status with a persistent session (default: off)")
    plant.add_argument("--mqtt-port", type=int, help="broker port (default 1883)")
    plant.add_argument("--mqtt-prefix", help="the daemons' topic_prefix (default edge-inspector)")
    plant.add_argument("--mqtt-client-id", help="persistent session id, one per console "
                       "(default edge-inspector-console)")
    plant.add_argument("--mqtt-username", help="broker user name")
    plant.add_argument("--mqtt-password-file", help="file holding the broker password")
    plant.add_argument("--mqtt-ca-file", help="CA certificate of the broker: connect with TLS")
    p.add_argument("--threads", type=int, default=8, help="web server threads (default 8)")
    sub = p.add_subparsers(dest="console_command", metavar="ACTION")
    admin = sub.add_parser("createadmin", help="create or reset an administrator login")
    admin.add_argument("--username", required=True)
    admin.add_argument("--email", default="")
    manage = sub.add_parser("manage", help="run a Django management command (migrate, showmigrations, ...)")
    manage.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """A bad setting or a missing console extra is a ConsoleConfigError (an EdgeInspectorError): ``cli.main``
    prints ``console: <message>`` on stderr and exits 1, as for every command."""
    from edge_inspector.console.conf import ConsoleConfigError  # no Django here

    try:
        import django  # noqa: F401
        import waitress  # noqa: F401
    except ImportError as exc:
        raise ConsoleConfigError(f"{exc.name} is not installed; install the console extra: "
                                 "pip install 'edge-inspector[console]'") from exc
    from edge_inspector.console import server  # Django is imported only when the console runs

    return _run(args, server)


def _run(args: argparse.Namespace, server) -> int:

    server.configure(
        data_dir=args.data_dir, zmq=args.zmq, models_dir=args.models_dir,
        daemon_pid_file=args.daemon_pid_file, daemon_config=getattr(args, "daemon_config", None),
        daemon_metrics=getattr(args, "daemon_metrics", None), frames_root=args.frames_root, host=args.host,
        keep_verdicts=args.keep_verdicts, keep_days=getattr(args, "keep_days", None),
        **{name: getattr(args, name, None) for name in ("mqtt_host", "mqtt_port", "mqtt_prefix", "mqtt_client_id",
                                                        "mqtt_username", "mqtt_password_file", "mqtt_ca_file")},
    )
    action = getattr(args, "console_command", None)
    if action == "createadmin":
        from django.core.management import CommandError

        from edge_inspector.console.admin_user import AdminUserError, create_admin
        from edge_inspector.console.management.commands.createadmin import read_password

        server.migrate()
        try:
            user, created = create_admin(args.username, read_password(), args.email)
        except (AdminUserError, CommandError) as exc:
            print(f"edge-inspector console createadmin: {exc}", file=sys.stderr)
            return 2
        print(f"{'created' if created else 'updated'} admin user {user.get_username()}")
        return 0
    if action == "manage":
        from django.core.management import execute_from_command_line

        execute_from_command_line(["edge-inspector console manage", *args.args])
        return 0
    from edge_inspector.console.conf import ConsoleConfigError

    try:
        return server.serve(args.host, args.port, threads=args.threads)
    except OSError as exc:  # the port is taken, the host is not ours: a --host/--port problem
        raise ConsoleConfigError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from exc
