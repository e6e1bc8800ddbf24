"""``lungcad``: the commands users run. Heavy modules are imported inside each command."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import BinaryIO

from lungcad.logs import configure
from lungcad.settings import Settings, get_settings

Command = Callable[[argparse.Namespace], int]


def cmd_migrate(args: argparse.Namespace) -> int:
    from lungcad_gateway.migrate import upgrade

    settings = get_settings()
    settings.check_safe()
    upgrade(settings, args.revision)
    print(f"database at {args.revision}")
    return 0


def _worker_argv(queues: str, concurrency: int, pool: str | None) -> list[str]:
    argv = [sys.executable, "-m", "celery", "-A", "lungcad.worker:app", "worker",
            "-Q", queues, "--concurrency", str(concurrency), "--loglevel", "INFO",
            "-n", f"{queues.replace(',', '-')}@%h"]
    if pool:
        argv += ["--pool", pool]
    return argv


def cmd_worker(args: argparse.Namespace) -> int:
    get_settings().check_safe()
    argv = _worker_argv(args.queues, args.concurrency, args.pool)
    os.execv(argv[0], argv)  # noqa: S606 - replaces this process with the Celery worker
    return 0  # pragma: no cover


class EmbeddedServer:
    """The API (uvicorn) plus, in the embedded default, one worker process per queue.

    SIGTERM (how Compose and systemd stop a service) and SIGINT both stop the API, then the
    workers: each gets SIGTERM (Celery's warm shutdown), ``worker_stop_grace_s`` to finish, then
    SIGKILL. Without our own SIGTERM handler uvicorn re-raised the signal into the default
    action after its shutdown and the process died before stopping its workers, orphaning them.
    """

    def __init__(self, settings: Settings, host: str, port: int, workers: bool | None,
                 relay: bool = True, migrate: bool = True, log_file: BinaryIO | None = None
                 ) -> None:
        """``log_file``: where the workers write (stdout and stderr) and uvicorn logs through
        the root logger, instead of the terminal (``lungcad demo``)."""
        import uvicorn

        from lungcad_gateway.app import create_app
        from lungcad_gateway.migrate import upgrade

        settings.check_safe(bind_host=host)
        self.grace_s = settings.worker_stop_grace_s
        self.stopping = False
        self.server: uvicorn.Server | None = None
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)  # before any worker exists
        if migrate:
            upgrade(settings)
        self.workers: list[subprocess.Popen[bytes]] = []
        embedded_broker = settings.broker_url.startswith("filesystem")
        if workers or (workers is None and embedded_broker):
            for queue in ("preprocess", "inference"):
                self.workers.append(subprocess.Popen(  # noqa: S603
                    _worker_argv(queue, 1, "solo"), stdout=log_file,
                    stderr=subprocess.STDOUT if log_file else None))
        app = create_app(settings, run_relay=relay)
        log_options = {} if log_file is None else {"log_config": None}
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info",
                                                    access_log=settings.access_log,
                                                    timeout_graceful_shutdown=10, **log_options))

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.stop()

    def run(self) -> None:
        try:
            if not self.stopping and self.server is not None:
                self.server.run()
        finally:
            self.stop_workers()

    def stop(self) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.should_exit = True

    def stop_workers(self) -> None:
        """SIGTERM to each worker, up to ``grace_s`` in all for them to exit, then SIGKILL."""
        import time

        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
        deadline = time.monotonic() + self.grace_s
        for worker in self.workers:
            try:
                worker.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()


def cmd_serve(args: argparse.Namespace) -> int:
    server = EmbeddedServer(get_settings(), args.host, args.port, args.workers,
                            relay=not args.no_relay, migrate=not args.no_migrate)
    print(f"LungCAD on http://{args.host}:{args.port}/  (research use, not for clinical "
          "diagnosis)", flush=True)
    server.run()
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    import signal
    import threading

    from lungcad_gateway.relay import Relay
    from lungcad_gateway.runtime import Runtime

    settings = get_settings()
    settings.check_safe()
    relay = Relay(Runtime(settings))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    relay.start()
    done.wait()
    relay.stop()
    return 0


def new_api_key(settings: Settings, tenant: str, label: str | None) -> tuple[str, str]:
    """A new API key for ``tenant`` (created if new): ``(tenant id, key)``."""
    from lungcad.db.session import make_engine, make_sessionmaker, session_scope
    from lungcad_gateway.auth import create_key

    engine = make_engine(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            row, key = create_key(session, tenant, label)
            return row.id, key
    finally:
        engine.dispose()


def cmd_create_key(args: argparse.Namespace) -> int:
    tenant_id, key = new_api_key(get_settings(), args.tenant, args.label)
    print(f"its webhooks' signing secret: lungcad admin webhook-secret --tenant {args.tenant}")
    print(f"tenant {args.tenant} ({tenant_id}): new API key (shown once, store it safely):")
    print(key)
    return 0


def cmd_revoke_key(args: argparse.Namespace) -> int:
    from lungcad.db.session import make_engine, make_sessionmaker, session_scope
    from lungcad_gateway.auth import revoke_key

    engine = make_engine(get_settings())
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            count = revoke_key(session, args.key)
    finally:
        engine.dispose()
    print(f"revoked {count} key(s)")
    return 0 if count else 1


def cmd_webhook_secret(args: argparse.Namespace) -> int:
    from lungcad.db.session import make_engine, make_sessionmaker, session_scope
    from lungcad.errors import NotFound
    from lungcad_gateway.webhook_secrets import rotate, tenant_named

    settings = get_settings()
    overlap_s = settings.webhook_secret_overlap_s if args.overlap_s is None else args.overlap_s
    engine = make_engine(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            tenant = tenant_named(session, args.tenant)
            if args.rotate:
                rotate(tenant, overlap_s)
            secret, until = tenant.webhook_secret, tenant.previous_webhook_secret_until
    except NotFound as exc:
        print(f"lungcad: {exc.message}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.rotate and until is not None:
        print(f"rotated; the previous secret also signs webhooks (X-LungCAD-Signature-Previous) "
              f"until {until.isoformat(timespec='seconds')}")
    elif args.rotate:
        print("rotated; the previous secret no longer signs webhooks")
    print(f"tenant {args.tenant}: webhook secret (HMAC-SHA256 key of X-LungCAD-Signature; keep "
          "it secret):")
    print(secret)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lungcad.demo import run_demo

    return run_demo(args.host, args.port, once=args.once, verbose=args.verbose)


PLUGIN_MODULES = ("lungcad_inference.analyze_command", "lungcad_inference.commands",
                  "lungcad_gateway.dicom.commands")


def _register_plugins(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Commands that live with their service (``analyze``, ``train``, ``evaluate``): each module
    exposes ``register(subparsers)`` and imports its heavy dependencies only when run."""
    import importlib
    import importlib.util

    for name in PLUGIN_MODULES:
        if importlib.util.find_spec(name.rsplit(".", 1)[0]) is None:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lungcad", description="LungCAD: lung nodule detection and lung-cancer risk on "
        "chest CT. Research use, not for clinical diagnosis.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the API (and, in the embedded default, the workers)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", dest="workers", action="store_true", default=None,
                       help="also start one preprocess and one inference worker")
    group.add_argument("--no-workers", dest="workers", action="store_false")
    p.add_argument("--no-migrate", action="store_true",
                   help="skip the prestart migration (compose runs a one-shot migrate service)")
    p.add_argument("--no-relay", action="store_true",
                   help="do not run the outbox relay and sweeper in this process")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="apply database migrations (prestart step)")
    p.add_argument("--revision", default="head")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("relay", help="run the outbox relay, webhook sender and sweeper")
    p.set_defaults(func=cmd_relay)

    p = sub.add_parser("worker", help="run a Celery worker")
    p.add_argument("--queues", default="preprocess,inference")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--pool", default=None, help="Celery pool (prefork by default)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="run the embedded system on a synthetic chest CT")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--once", action="store_true",
                   help="exit after the demo job ends (0 when it succeeded)")
    p.add_argument("--verbose", action="store_true",
                   help="also show the full log (server, migrations, workers) live; it is "
                        "always written to <data dir>/demo.log")
    p.set_defaults(func=cmd_demo)

    _register_plugins(sub)

    admin = sub.add_parser("admin", help="administration").add_subparsers(dest="admin",
                                                                          required=True)
    p = admin.add_parser("create-key", help="create an API key (and the tenant if new)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--label", default=None)
    p.set_defaults(func=cmd_create_key)
    p = admin.add_parser("revoke-key", help="revoke an API key (full key or its prefix)")
    p.add_argument("key")
    p.set_defaults(func=cmd_revoke_key)
    p = admin.add_parser("webhook-secret",
                         help="print a tenant's webhook signing secret, or rotate it")
    p.add_argument("--tenant", required=True)
    p.add_argument("--rotate", action="store_true",
                   help="make a new secret; the old one also signs for the overlap")
    p.add_argument("--overlap-s", type=float, default=None,
                   help="seconds the old secret keeps signing after --rotate (default "
                        "LUNGCAD_WEBHOOK_SECRET_OVERLAP_S; 0 for none, e.g. after a leak)")
    p.set_defaults(func=cmd_webhook_secret)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(json_lines=args.command in ("serve", "relay") and not Settings().is_development)
    from lungcad.settings import UnsafeConfigurationError

    try:
        return int(args.func(args))
    except UnsafeConfigurationError as exc:
        print(f"lungcad: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
