"""``lungcad``: the commands users run. Heavy modules are imported inside each command."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

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
    """The API (uvicorn) plus, in the embedded default, one worker process per queue."""

    def __init__(self, settings: Settings, host: str, port: int, workers: bool | None,
                 relay: bool = True, migrate: bool = True) -> None:
        import uvicorn

        from lungcad_gateway.app import create_app
        from lungcad_gateway.migrate import upgrade

        settings.check_safe(bind_host=host)
        if migrate:
            upgrade(settings)
        self.workers: list[subprocess.Popen[bytes]] = []
        embedded_broker = settings.broker_url.startswith("filesystem")
        if workers or (workers is None and embedded_broker):
            for queue in ("preprocess", "inference"):
                self.workers.append(subprocess.Popen(_worker_argv(queue, 1, "solo")))  # noqa: S603
        app = create_app(settings, run_relay=relay)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info",
                                                    access_log=settings.access_log,
                                                    timeout_graceful_shutdown=10))

    def run(self) -> None:
        try:
            self.server.run()
        finally:
            self.stop_workers()

    def stop(self) -> None:
        self.server.should_exit = True

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()


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


def cmd_create_key(args: argparse.Namespace) -> int:
    from lungcad.db.session import make_engine, make_sessionmaker, session_scope
    from lungcad_gateway.auth import create_key

    settings = get_settings()
    engine = make_engine(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            tenant, key = create_key(session, args.tenant, args.label)
            tenant_id = tenant.id
    finally:
        engine.dispose()
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


def cmd_demo(args: argparse.Namespace) -> int:
    from lungcad.demo import run_demo

    return run_demo(args.host, args.port, once=args.once)


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
