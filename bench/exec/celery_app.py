"""bench/exec: Celery app for the no-op job: Redis broker and Redis result backend (so the
completion of every job is recorded, like the runner's jr_jobs_done and RQ's finished registry).
The broker URL comes from BENCH_REDIS_URL. The task is tasks.noop itself, registered by name.
"""

import os

from celery import Celery

import tasks

_url = os.environ["BENCH_REDIS_URL"]
app = Celery("bench_exec", broker=_url, backend=_url)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)
noop = app.task(name="tasks.noop")(tasks.noop)
