"""`daemon`: a cycle on the configured schedule until stopped.

A failing cycle is logged and counted and never kills the loop (the one catch-all of the
program). SIGTERM or SIGINT lets the current unit of work finish, commits, and exits 0.
Logs are one JSON object per line on stderr, with the run id, never a secret.

The signal handler only records the signal: it takes no lock and writes nothing. A handler
runs in the main thread between two bytecodes, or inside a system call the signal interrupted,
so one that logged (or set a `threading.Event`, which takes a lock) would deadlock when the
signal lands while the main thread holds that lock, e.g. blocked writing a log line to a full
stderr pipe. The main thread logs `stopping` when it notices.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

import schedule

from connectors.errors import AuthError
from state import StateDB, StateLock
from sync.config import Config
from sync.engine import Engine

__all__ = ["run_daemon"]

_NAP_SECONDS = 0.2


class _JsonLog:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, event: str, data: Any) -> None:
        line = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, **dict(data)}
        with self.lock:
            self.out.write(json.dumps(line, default=str) + "\n")
            self.out.flush()


def run_daemon(config: Config, err: TextIO, *, max_cycles: int | None = None) -> int:
    """Run cycles every `config.interval_seconds` until SIGTERM/SIGINT (or `max_cycles`)."""
    from sync.app import make_salesforce, make_vitally

    log = _JsonLog(err)
    received: list[int] = []  # appended by the handler: no lock, no I/O
    noticed: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    def should_stop() -> bool:
        if received and not noticed:
            noticed.append(received[0])
            log("stopping", {"signal": signal.Signals(received[0]).name})
        return bool(received)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stats = {"cycles": 0, "failures": 0}

    with StateLock(config.state_path):
        state = StateDB.open(config.state_path)
        vitally = make_vitally(config)
        salesforce = make_salesforce(config)

        def cycle() -> None:
            engine = Engine(
                config,
                state,
                vitally,
                salesforce,
                clock=lambda: datetime.now(UTC),
                log=log,
                should_stop=should_stop,
            )
            try:
                engine.run_cycle()
            except AuthError as exc:
                stats["failures"] += 1
                log("cycle_failed", {"error": str(exc), "kind": "auth"})
            except Exception as exc:  # the job wrapper: a failed cycle never kills the loop
                stats["failures"] += 1
                log("cycle_failed", {"error": f"{type(exc).__name__}: {exc}"})
            stats["cycles"] += 1

        scheduler = schedule.Scheduler()
        scheduler.every(max(1, round(config.interval_seconds))).seconds.do(cycle)
        log("daemon_started", {"interval_seconds": config.interval_seconds, "state": str(config.state_path)})
        cycle()
        while not should_stop() and (max_cycles is None or stats["cycles"] < max_cycles):
            scheduler.run_pending()
            idle = scheduler.idle_seconds
            # A signal does not cut a sleep short (PEP 475): short naps bound how late it is seen.
            time.sleep(min(_NAP_SECONDS, max(idle or 0.0, 0.05)))
        state.close()
    log("daemon_stopped", stats)
    return 0
