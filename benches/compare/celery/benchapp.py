"""The Celery app of the comparison: one no-op task, the guide's production settings
(acks_late, reject_on_worker_lost, prefetch 4), results in db 2, the broker in db 1."""
import os

from celery import Celery

port = int(os.environ.get("REDIS_PORT", "6379"))
app = Celery(
    "benchapp",
    broker=f"redis://127.0.0.1:{port}/1",
    backend=f"redis://127.0.0.1:{port}/2",
)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=4,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(x):
    return x
