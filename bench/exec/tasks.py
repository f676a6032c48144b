"""The one no-op Python function every Python system in bench/exec runs (standard library only).

The exec plugin's handler (exec_handler.py), RQ (`q.enqueue(tasks.noop)`) and Celery
(celery_app.py registers this very function as a task) all call `noop()` with no arguments.
"""


def noop():
    return None
