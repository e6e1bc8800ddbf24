"""Celery app factory: explicit queues, JSON messages that carry only IDs, late acks, prefetch 1.

The gateway never imports the task modules: it publishes by task name through the outbox relay.
Workers import them through ``include`` when they start.
"""

from __future__ import annotations

import importlib.util

from celery import Celery
from kombu import Exchange, Queue

from lungcad.settings import Settings

QUEUE_PREPROCESS = "preprocess"
QUEUE_INFERENCE = "inference"
TASK_PREPROCESS = "lungcad.preprocess"
TASK_INFERENCE = "lungcad.inference"
TASK_QUEUES = {TASK_PREPROCESS: QUEUE_PREPROCESS, TASK_INFERENCE: QUEUE_INFERENCE}
WORKER_MODULES = ["lungcad_preprocess.tasks", "lungcad_inference.tasks"]


def broker_transport_options(settings: Settings) -> dict[str, object]:
    if settings.broker_url.startswith("filesystem"):
        folder = settings.broker_dir
        (folder / "queue").mkdir(parents=True, exist_ok=True)
        (folder / "processed").mkdir(parents=True, exist_ok=True)
        (folder / "control").mkdir(parents=True, exist_ok=True)
        return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
                "processed_folder": str(folder / "processed"), "store_processed": False,
                "control_folder": str(folder / "control")}
    # Redis: a message not acked within the visibility timeout is redelivered. It must exceed
    # the hard time limit; the job lease in the database stops a redelivered copy from running
    # while the first one is still alive.
    return {"visibility_timeout": (settings.broker_visibility_timeout_s
                                   or settings.task_time_limit_s + 300),
            "socket_connect_timeout": 3, "socket_timeout": 10}


def available_worker_modules() -> list[str]:
    """The task modules installed in this image (a preprocess-only image has no inference)."""
    found = []
    for name in WORKER_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                found.append(name)
        except ModuleNotFoundError:
            continue
    return found


def create_celery(settings: Settings, include_tasks: bool = False) -> Celery:
    app = Celery("lungcad", broker=settings.broker_url,
                 include=available_worker_modules() if include_tasks else [])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        # Each queue has its own direct exchange and routing key: a message for one queue can
        # never be delivered to the other.
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q)
                     for q in (QUEUE_PREPROCESS, QUEUE_INFERENCE)],
        task_default_queue=QUEUE_PREPROCESS,
        task_default_exchange=QUEUE_PREPROCESS,
        task_default_routing_key=QUEUE_PREPROCESS,
        task_routes={name: {"queue": queue, "exchange": queue, "routing_key": queue}
                     for name, queue in TASK_QUEUES.items()},
        task_create_missing_queues=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        broker_transport_options=broker_transport_options(settings),
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app
