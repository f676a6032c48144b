"""The seed scan pipeline's RQ entry point (app.worker.process_scan_job), shaped as an exec
handler: progress steps instead of `job.step`/`job.progress` rows, exceptions mapped to the
runner's retryable/permanent outcomes, and the job timeout enforced by the runner.

RQ:      queue.enqueue("app.worker.process_scan_job", scan_id=..., url=..., user_id=...,
                       job_timeout="5m", retry=Retry(max=3, interval=[10, 30, 60]))
Runner:  runner enqueue process_scan_job '{"kwargs": {"scan_id": "...", "url": "..."}}'
             --timeout 5m --max-attempts 4 --retry-schedule 10,30,60
"""
from urllib.parse import urlparse

from jobrunner_handler import Permanent, handler, progress, run


@handler("process_scan_job", args=True)
def process_scan_job(scan_id, url, user_id=None):
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Permanent("ERROR_VALIDATION: %r is not an http(s) URL" % url)  # no retry
    progress(10, "CRAWL")
    # ... fetch (a network error raises: retryable, on the kind's retry schedule) ...
    progress(40, "PARSE")
    progress(70, "ANALYZE")
    progress(90, "GENERATE")
    return {"scan_id": scan_id, "status": "FULL_READY", "host": parsed.hostname}


if __name__ == "__main__":
    run()
