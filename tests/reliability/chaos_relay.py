"""The real outbox relay with test instrumentation, for the fault tests: ``lungcad <args>``
(``relay`` when none; ``serve`` runs the gateway with its relay in process) with every publish
to the broker recorded and, optionally, slowed.

    python -m tests.reliability.chaos_relay [relay | serve --no-workers ...]

Environment:
- ``LUNGCAD_CHAOS_LEDGER``: a file that gets one JSON line per message the relay handed to the
  broker (``event: publish``, job, task, attempt, pid, time), written once the broker has it;
- ``LUNGCAD_CHAOS_PUBLISH_DELAY_S``: sleep this long before each publish, so that a batch takes
  long enough for a test to kill the relay in the middle of it (after some messages were
  published, before the batch's rows were marked published).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from tests.reliability.chaos_worker import _ledger

DELAY_S = float(os.environ.get("LUNGCAD_CHAOS_PUBLISH_DELAY_S", "0") or 0)


def main() -> None:
    from celery import Celery

    from lungcad.cli import main as cli

    original = Celery.send_task

    def send_task(self: Celery, name: str, args: Any = None, **kwargs: Any) -> Any:
        if DELAY_S:
            time.sleep(DELAY_S)
        result = original(self, name, args, **kwargs)
        job, attempt = args  # the relay always sends [job_id, attempt]
        _ledger(event="publish", task=name, job=job, attempt=attempt)
        return result

    Celery.send_task = send_task  # type: ignore[method-assign]
    raise SystemExit(cli(sys.argv[1:] or ["relay"]))


if __name__ == "__main__":
    main()
