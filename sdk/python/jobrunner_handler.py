"""Job handlers for jobrunner's exec plugin, in Python (standard library only).

The runner starts your module as a long-lived child process (the command of a
[[plugins.exec.kinds]] entry) and talks JSON lines to it on stdin/stdout: one
job at a time, the same process for many jobs. This module speaks that
protocol (docs/exec.md); you write functions:

    from jobrunner_handler import handler, run, Permanent, Snooze, progress, enqueue

    @handler("send_welcome_email")
    def send_welcome_email(payload, job):
        progress(10, "rendering")
        ...
        enqueue("audit", {"user": payload["user"]}, delay_seconds=60)
        return {"sent": True}          # the job's result (any JSON value)

    if __name__ == "__main__":
        run()

Outcomes: returning completes the job; any exception is a retryable failure;
`Permanent` fails it for good (dead letter queue); `Snooze(seconds)` runs it
again later without using an attempt. `job.cancelled` turns True when the
runner asks the job to stop (deadline, `runner cancel`, shutdown); a handler
that ignores it gets SIGTERM (raised here as `Cancelled`), then SIGKILL.

RQ-style functions that take positional arguments: `@handler("kind",
args=True)` calls `f(*payload["args"], **payload["kwargs"])`.

Output: `print()` and anything written to stdout goes to stderr (the runner
logs it, tagged with the plugin); the protocol has its own descriptor, so
stray output cannot corrupt it.
"""

import json
import os
import queue
import signal
import sys
import threading
import traceback

__all__ = [
    "handler", "run", "progress", "enqueue", "log", "current_job", "parent_results",
    "all_parent_results",
    "Permanent", "Retry", "Snooze", "Cancelled", "EnqueueRefused", "Job",
]

PROTOCOL = 1
_handlers = {}


class _Kinded(Exception):
    def __init__(self, *args, kind=None):
        super().__init__(*args)
        self.kind = kind


class Permanent(_Kinded):
    """The job can never succeed (bad input, ...): no retry. `kind=` names the failure
    (e.g. "invalid_domain"), else the attempt's error kind is "permanent"."""


class Retry(_Kinded):
    """A transient failure (the same as any other exception; says so explicitly). `kind=`
    names the failure, else it is named after the exception's class."""


class Snooze(Exception):
    """Run the job again after `seconds`, without using up an attempt."""

    def __init__(self, seconds):
        super().__init__("snooze %s s" % seconds)
        self.seconds = float(seconds)


class Cancelled(BaseException):
    """The runner asked the job to stop and the handler did not return in time."""


class EnqueueRefused(Exception):
    """The runner refused an enqueue (a kind this plugin may not enqueue, bounds, budget)."""


class Job:
    """The running job: id, kind, queue, attempt, max_attempts, deadline_ms, cancelled, and
    traceparent (the attempt's W3C traceparent, or None: give it to your tracing SDK as the
    parent context so your spans join the job's trace)."""

    def __init__(self, msg):
        self.id = msg.get("id")
        self.kind = msg.get("kind")
        self.queue = msg.get("queue")
        self.attempt = msg.get("attempt")
        self.max_attempts = msg.get("max_attempts")
        self.deadline_ms = msg.get("deadline_ms") or 0
        self.traceparent = msg.get("traceparent")
        self._cancel = threading.Event()

    @property
    def cancelled(self):
        return self._cancel.is_set()


def handler(kind, args=False):
    """Registers a function for a job kind: f(payload, job), or f(*args, **kwargs) with args=True."""

    def wrap(fn):
        _handlers[kind] = (fn, args)
        return fn

    return wrap


class _Channel:
    """The protocol's descriptors and the stdin reader thread."""

    def __init__(self):
        # Private copies of stdin/stdout for the protocol; fd 1 becomes stderr and fd 0
        # /dev/null, so print() and child processes cannot write into (or read from) it.
        self._out = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n")
        self._in = os.fdopen(os.dup(0), "r", encoding="utf-8", newline="\n")
        os.dup2(2, 1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()
        self.jobs = queue.Queue()
        self.replies = queue.Queue()
        self.job = None
        self._ref = 0
        threading.Thread(target=self._reader, name="jobrunner-stdin", daemon=True).start()

    def send(self, msg):
        line = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def _reader(self):
        for line in self._in:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            t = msg.get("type") if isinstance(msg, dict) else None
            if t == "job":
                self.jobs.put(msg)
            elif t == "cancel":
                job = self.job
                if job is not None:
                    job._cancel.set()
            elif t in ("enqueued", "parent_results"):
                self.replies.put(msg)
        self.jobs.put(None)  # stdin closed: the runner is done with us

    def next_ref(self):
        self._ref += 1
        return self._ref


_chan = None


def current_job():
    """The running job (None between jobs)."""
    return _chan.job if _chan is not None else None


def progress(percent, step=None):
    """Reports progress of the running job: percent in [0, 100], an optional step name."""
    msg = {"type": "progress", "percent": float(percent)}
    if step is not None:
        msg["step"] = str(step)
    _chan.send(msg)


def log(message, level="info"):
    """A log line attributed to the running job (debug, info, warn, error)."""
    _chan.send({"type": "log", "level": level, "message": str(message)})


def enqueue(kind, payload=None, **options):
    """Enqueues another job; options as `runner enqueue` takes them (queue, priority,
    delay_seconds, max_attempts, timeout_seconds, ...). Returns the new job's id."""
    ref = _chan.next_ref()
    msg = {"type": "enqueue", "ref": ref, "kind": kind,
           "payload": {} if payload is None else payload}
    if options:
        msg["options"] = options
    _chan.send(msg)
    while True:
        reply = _chan.replies.get()
        if reply.get("ref") == ref:
            break
    if "id" in reply:
        return reply["id"]
    raise EnqueueRefused("enqueue of %s refused: %s" % (kind, reply.get("error")))


def parent_results(offset=0):
    """One page of the results of the running job's parents (the jobs it depends on, such as
    the steps a workflow step depends on): {"total", "offset", "count", "next_offset",
    "parents": [{"job_id", "step", "kind", "state", "result"}]}. Follow next_offset until it
    is None, or use all_parent_results()."""
    ref = _chan.next_ref()
    _chan.send({"type": "parent_results", "ref": ref, "offset": int(offset)})
    while True:
        reply = _chan.replies.get()
        if reply.get("ref") == ref:
            break
    if "page" in reply:
        return reply["page"]
    raise Retry("parent results: %s" % reply.get("error"))


def all_parent_results():
    """Every parent's entry, all pages read."""
    out, offset = [], 0
    while offset is not None:
        page = parent_results(offset)
        out.extend(page["parents"])
        offset = page["next_offset"]
    return out


def _on_sigterm(signum, frame):
    raise Cancelled("SIGTERM from the runner")


def _outcome(job, msg):
    entry = _handlers.get(job.kind)
    if entry is None:
        return {"type": "error", "permanent": True,
                "message": "no handler registered for kind %r" % job.kind}
    fn, as_args = entry
    payload = msg.get("payload")
    try:
        if as_args:
            p = payload if isinstance(payload, dict) else {}
            result = fn(*p.get("args", []), **p.get("kwargs", {}))
        else:
            result = fn(payload, job)
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as e:
            return {"type": "error", "message": "result is not JSON: %s" % e}
        return {"type": "result", "result": result}
    except Snooze as e:
        return {"type": "snooze", "seconds": e.seconds}
    except Permanent as e:
        msg = {"type": "error", "permanent": True, "message": _text(e)}
        if e.kind:
            msg["kind"] = str(e.kind)
        return msg
    except Cancelled:
        return {"type": "cancelled"}
    except Exception as e:  # noqa: BLE001 - every other failure is retryable
        traceback.print_exc(file=sys.stderr)
        if job.cancelled:
            return {"type": "cancelled"}
        msg = {"type": "error", "permanent": False, "message": _text(e)}
        if isinstance(e, _Kinded):
            if e.kind:
                msg["kind"] = str(e.kind)
        else:
            msg["kind"] = _kind_of(e)
        return msg


def _kind_of(e):
    """The error kind of an exception: its class name in snake case (ConnectionError ->
    connection_error), at most 32 characters; the runner refuses names it reserves."""
    name = type(e).__name__
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i > 0 and (not name[i - 1].isupper() or
                                      (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(c.lower() if c.isascii() and c.isalnum() else "_")
    return "".join(out)[:32].strip("_") or "error"


def _text(e):
    s = str(e)
    return "%s: %s" % (type(e).__name__, s) if s else type(e).__name__


def run():
    """Serves jobs until the runner closes stdin. Call once, after registering handlers."""
    global _chan
    _chan = _Channel()
    signal.signal(signal.SIGTERM, _on_sigterm)
    _chan.send({"type": "ready", "protocol": PROTOCOL, "kinds": sorted(_handlers)})
    while True:
        msg = _chan.jobs.get()
        if msg is None:
            return
        job = Job(msg)
        _chan.job = job
        try:
            out = _outcome(job, msg)
        except Cancelled:
            out = {"type": "cancelled"}
        _chan.job = None
        try:
            _chan.send(out)
        except Cancelled:
            _chan.send({"type": "cancelled"})
