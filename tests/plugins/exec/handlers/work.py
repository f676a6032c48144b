"""Test handlers for tests/exec (the exec plugin through the real runner).

py_work payload keys (all optional):
  n                 echoed in the result
  fail_attempts     fail (retryable) while job.attempt <= this
  permanent         fail permanently
  snooze_until      Unix time (s): snooze until then
  enqueue           enqueue a py_child job with {"parent": job.id}; its id goes in the result
  sleep_ms          sleep this long, returning early (cancelled) when the runner asks
  ignore_deadline   loop forever, ignoring the cancel message and SIGTERM
  progress          report progress 50 "half" before finishing
  traceparent       return job.traceparent (the job message's, None when it has none)
py_child: returns {"child_of": payload["parent"]}.
py_join: reads its parents' results (a workflow step): {"count", "n_sum", "steps", "past_end"}.
"""
import os
import signal
import time

from jobrunner_handler import (Permanent, Snooze, all_parent_results, enqueue, handler, log,
                               parent_results, progress, run)


@handler("py_work")
def work(payload, job):
    p = payload or {}
    if p.get("progress"):
        progress(50, "half")
    if job.attempt <= p.get("fail_attempts", 0):
        raise RuntimeError("failing attempt %d on purpose" % job.attempt)
    if p.get("permanent"):
        raise Permanent("bad input on purpose")
    if "snooze_until" in p and time.time() < p["snooze_until"]:
        raise Snooze(p["snooze_until"] - time.time())
    if p.get("ignore_deadline"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(0.05)
    if "sleep_ms" in p:
        until = time.time() + p["sleep_ms"] / 1000.0
        while time.time() < until:
            if job.cancelled:
                log("stopping on cancel", "warn")
                return {"stopped": True}
            time.sleep(0.01)
    out = {"n": p.get("n"), "attempt": job.attempt, "pid": os.getpid()}
    if p.get("traceparent"):
        out["traceparent"] = job.traceparent
    if p.get("enqueue"):
        out["child"] = enqueue("py_child", {"parent": job.id})
    return out


@handler("py_child")
def child(payload, job):
    return {"child_of": (payload or {}).get("parent")}


@handler("py_join")
def join(payload, job):
    entries = all_parent_results()
    return {"count": len(entries),
            "n_sum": sum((e["result"] or {}).get("n") or 0 for e in entries),
            "steps": sorted(e["step"] for e in entries),
            "past_end": parent_results(100000)["count"]}


if __name__ == "__main__":
    run()
