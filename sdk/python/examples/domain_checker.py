"""The seed domain checker's RQ entry point, shaped as an exec handler.

Under RQ the API enqueued
    queue.enqueue("domain_checker.main.handle_domain_check", [["example.com", "test.io"]])
and a worker imported domain_checker.main and called handle_domain_check(domains).
Under the runner the same function is registered for a kind and the call becomes
    runner enqueue handle_domain_check '{"args": [["example.com", "test.io"]]}'
(`args=True` unpacks the payload's "args"/"kwargs" the way RQ did).

Config (the runner's, not this file's):
    [[plugins.exec.kinds]]
    kind = "handle_domain_check"
    command = ["/usr/bin/python3", "/srv/domain_checker/examples/domain_checker.py"]
    env = { PYTHONPATH = "/srv/domain_checker:/usr/lib/jobrunner/python" }
    workers = 4
    [plugins.exec.sandbox]
    readable = ["/srv/domain_checker", "/usr/lib/jobrunner/python"]
    network = "full"                 # DNS and WHOIS

The checker module below stands in for the application's own code: with the real application
installed, import it instead (`from domain_checker.main import handle_domain_check`).
"""
import socket

from jobrunner_handler import Permanent, handler, progress, run


def check_one(domain):
    """Available when the name does not resolve (the seed checks DNS first, then WHOIS)."""
    try:
        socket.getaddrinfo(domain, None)
        return "registered"
    except socket.gaierror:
        return "available"


@handler("handle_domain_check", args=True)
def handle_domain_check(domains):
    if not isinstance(domains, list) or not domains:
        raise Permanent("handle_domain_check takes a non-empty list of domain names")
    out = {}
    for i, d in enumerate(domains):
        out[d] = check_one(d)
        progress(100.0 * (i + 1) / len(domains), d)
    return out


if __name__ == "__main__":
    run()
