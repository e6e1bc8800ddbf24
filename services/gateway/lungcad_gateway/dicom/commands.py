"""``lungcad dicom-listen``: the DICOM listener as its own process (registered by the CLI)."""

from __future__ import annotations

import argparse


def cmd_dicom_listen(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading

    from lungcad.settings import get_settings
    from lungcad_gateway.dicom.listener import Listener

    settings = get_settings()
    settings.check_safe()
    updates: dict[str, object] = {}
    if args.ae_title:
        updates["dicom_ae_title"] = args.ae_title
    if args.quiet_period is not None:
        updates["dicom_quiet_period_s"] = args.quiet_period
    settings = settings.model_copy(update=updates)
    try:
        listener = Listener(settings)
    except ValueError as exc:
        print(f"lungcad dicom-listen: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    port = args.port or settings.dicom_port
    listener.start(args.host, port)
    print(f"LungCAD DICOM listener {settings.dicom_ae_title} on {args.host}:{port}, calling "
          f"AE titles {', '.join(sorted(settings.dicom_ae_tenants))}; quiet period "
          f"{settings.dicom_quiet_period_s:g} s", flush=True)
    done.wait()
    listener.stop()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dicom-listen", help="receive studies by DICOM C-STORE (a PACS or "
                       "scanner pushes; each study becomes a job after a quiet period)")
    p.add_argument("--host", default="0.0.0.0", help="bind address")  # noqa: S104
    p.add_argument("--port", type=int, default=None, help="default LUNGCAD_DICOM_PORT (11112)")
    p.add_argument("--ae-title", default=None, help="default LUNGCAD_DICOM_AE_TITLE (LUNGCAD)")
    p.add_argument("--quiet-period", type=float, default=None, metavar="S",
                   help="seconds after a study's last instance before it becomes a job "
                   "(default LUNGCAD_DICOM_QUIET_PERIOD_S, 30)")
    p.set_defaults(func=cmd_dicom_listen)
