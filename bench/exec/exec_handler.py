"""bench/exec: the exec plugin's warm handler for the no-op job (sdk/python/jobrunner_handler.py).

The kind `noop` calls tasks.noop() RQ-style (args=True: f(*payload["args"], **payload["kwargs"]),
here with the payload {}: no arguments), the same function RQ and Celery run.
"""

from jobrunner_handler import handler, run

import tasks

handler("noop", args=True)(tasks.noop)

if __name__ == "__main__":
    run()
