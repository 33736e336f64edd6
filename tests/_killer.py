"""Kill -9 at a chosen write: a helper process for tests/test_kill.py (run as a script, never imported by hambench).

Every file and folder hambench publishes reaches its place by a rename (``os.replace``, ``os.rename``) or by
:func:`hambench.atomic.exchange`. This process imports hambench (and torch) once, registers the tests' ``toy``
model, then serves requests read as JSON lines on stdin, one per command to run::

    {"argv": ["train", "toy", ...], "cwd": DIR, "events": FILE,
     "kill": null | {"at": K, "when": "before"|"after", "under": PATH}}

For each it forks a child that runs ``hambench ARGV`` in ``cwd`` (output to ``FILE.log``), appends the
destination of every rename or swap to ``FILE`` (one per line) and, when ``kill`` is given, sends itself SIGKILL
just before or just after the K-th one (counted from 0) whose destination starts with ``kill["under"]`` (default:
any): a real ``kill -9`` at a known point. The reply is one
JSON line, ``{"signal": N or 0, "code": exit code or null}``.

``python tests/_killer.py TOYDIR --run ARGV...`` runs one command directly, without hooks (for a kill from
outside at an arbitrary moment).

Forking after ``import torch`` is safe here because the parent never runs a torch operation (no thread pool
exists yet); each child sets one torch thread, as the test session does.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _hook(events: Path, kill: dict | None) -> None:
    """Log (and maybe die at) every rename and swap of this process."""
    import hambench.atomic as atomic

    count = [0]
    log = open(events, "a", buffering=1)

    under = str((kill or {}).get("under", ""))

    def wrap(real, dest_of):
        def f(*args, **kw):
            dest = str(dest_of(*args))
            log.write(dest + "\n")
            if not dest.startswith(under):
                return real(*args, **kw)
            k = count[0]
            count[0] += 1
            if kill is not None and kill["at"] == k and kill["when"] == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            out = real(*args, **kw)
            if kill is not None and kill["at"] == k and kill["when"] == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return f

    os.replace = wrap(os.replace, lambda src, dst, *a: dst)
    os.rename = wrap(os.rename, lambda src, dst, *a: dst)
    atomic.exchange = wrap(atomic.exchange, lambda a, b: b)


def _child(req: dict) -> None:
    import torch

    from hambench.app.cli import main

    torch.set_num_threads(1)
    os.chdir(req["cwd"])
    fd = os.open(req["events"] + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    _hook(Path(req["events"]), req.get("kill"))
    try:
        main(["-q", *req["argv"]], standalone_mode=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported as an exit code
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        _, status = os.waitpid(pid, 0)
        reply = ({"signal": os.WTERMSIG(status), "code": None} if os.WIFSIGNALED(status)
                 else {"signal": 0, "code": os.WEXITSTATUS(status)})
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    import torch  # noqa: F401 - imported once, before the forks

    import hambench.app.cli  # noqa: F401 - every command's modules too, so a child starts at once
    import hambench.leaderboard.site  # noqa: F401
    import hambench.leaderboard.submit  # noqa: F401
    import hambench.models.run  # noqa: F401

    from _toy_model import register_toy

    register_toy(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "--run":
        from hambench.app.cli import main

        torch.set_num_threads(1)
        main(sys.argv[3:])
    else:
        print("ready", flush=True)
        serve()
