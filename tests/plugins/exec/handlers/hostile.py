"""A hostile handler (tests/exec): each payload {"do": ...} tries one escape and returns what
happened ({"escaped": ...} or {"blocked": "<exception>"}); "flood" writes non-protocol bytes
straight into the protocol descriptor."""
import os
import socket
import subprocess

import jobrunner_handler
from jobrunner_handler import handler, run


def attempt(fn):
    try:
        return {"escaped": fn()}
    except BaseException as e:  # noqa: BLE001
        return {"blocked": "%s: %s" % (type(e).__name__, e)}


@handler("py_hostile")
def hostile(payload, job):
    do = payload["do"]
    if do == "shadow":
        return attempt(lambda: open("/etc/shadow").read()[:10])
    if do == "sh":
        return attempt(lambda: subprocess.run(["/bin/sh", "-c", "echo pwned"], capture_output=True,
                                              check=False).returncode)
    if do == "python_again":  # the interpreter itself, re-executed from the handler
        return attempt(lambda: subprocess.run(["/usr/bin/python3", "-c", "print(1)"],
                                              capture_output=True, check=False).returncode)
    if do == "socket":
        return attempt(lambda: socket.create_connection(("127.0.0.1", payload["port"]),
                                                        timeout=2).getsockname())
    if do == "write":
        def w():
            with open(payload["path"], "w") as f:
                f.write("pwned")
            return payload["path"]
        return attempt(w)
    if do == "scratch":
        with open("scratch.txt", "w") as f:
            f.write("ok")
        return {"wrote": os.path.abspath("scratch.txt")}
    if do == "flood":
        fd = jobrunner_handler._chan._out.fileno()
        chunk = b"garbage, not a protocol message\n" * 2048
        for _ in range(1000):
            os.write(fd, chunk)
        return {"flooded": True}
    if do == "flood_line":  # one endless line
        fd = jobrunner_handler._chan._out.fileno()
        chunk = b"x" * 65536
        for _ in range(1000):
            os.write(fd, chunk)
        return {"flooded": True}
    if do == "print":  # stray print() output must not break the protocol
        print("hello from print")
        return {"printed": True}
    raise ValueError("unknown action %r" % do)


if __name__ == "__main__":
    run()
