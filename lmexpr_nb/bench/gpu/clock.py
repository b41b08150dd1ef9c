"""`bench gpu`'s clock: the time budget, the seconds each compile child may take, and the watchdog.

    Budget(minutes, clock)         seconds elapsed and left on `clock` (time.perf_counter; tests pass a fake)
    Plan, GPU_PLAN, CPU_PLAN       seconds kept for the sections after a compile child
    child_timeout(kind, left, p)   the seconds a compile child gets (0.0: not started, too little time)
    Watchdog(budget, on_fire)      once the budget is spent, calls on_fire() exactly once, unless the
                                   run finished first; kill_group(proc) ends a child and its workers

The training compile comes first and has a floor of its own (`Plan.train_compile`, default 240 s on a
GPU: a cold Inductor compile of the generator's forward and backward and of the discriminators' graphs),
taken from the learning section, which trains for whatever is left; it is cut only where the budget
could not otherwise keep `Plan.learn_min` seconds for the learning check and the other sections'
seconds. The inference compile (two graphs: batch 1 and the throughput batch) comes later and gets at
most `Plan.infer_compile`, from the time above those needs only.

The watchdog: a daemon thread polls the clock; when the budget is spent it takes the lock, marks the
run "fired" and calls on_fire (main.py's: kill the children, write the JSON with deadline_hit, exit 3)
while holding it. `finish()` takes the same lock and marks the run "finished" first, so a run that
finished is never rewritten by a late deadline, and a run the deadline has fired on is not written a
second time by the main thread (finish() returns False).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass


class Budget:
    """The sections' wall-time budget on `clock` (seconds)."""

    def __init__(self, minutes: float, clock=time.perf_counter):
        self.clock = clock
        self.t0, self.total = clock(), float(minutes) * 60

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def left(self) -> float:
        return self.total - self.elapsed()

    @property
    def deadline(self) -> float:
        """The end of the budget as a value of `clock`."""
        return self.t0 + self.total


@dataclass(frozen=True)
class Plan:
    """Seconds for the compile children and for what must still run after them."""
    train_compile: float        # the training compile's own time (its floor; the learning check adapts)
    infer_compile: float        # the inference compile's, at most
    infer_eager: float          # the eager inference section (between the two compile children)
    ddp: float
    data: float
    learn_min: float            # the least the learning check is left: training and its final numbers
    child_min: float            # below this a child is not started (it could not even import torch)


GPU_PLAN = Plan(train_compile=240.0, infer_compile=120.0, infer_eager=25.0, ddp=45.0, data=30.0, learn_min=75.0,
                child_min=30.0)
CPU_PLAN = Plan(train_compile=60.0, infer_compile=45.0, infer_eager=2.0, ddp=3.0, data=8.0, learn_min=10.0,
                child_min=8.0)


def child_timeout(kind: str, left: float, plan: Plan) -> float:
    """Seconds for the "train" or "infer" compile child when `left` seconds of the budget are left;
    0.0 where less than plan.child_min would remain (the child is then skipped, and says why)."""
    after = plan.ddp + plan.data + plan.learn_min
    if kind == "train":
        cap, after = plan.train_compile, after + plan.infer_eager
    elif kind == "infer":
        cap = plan.infer_compile
    else:
        raise ValueError(f"compile child kind must be train or infer, got {kind!r}")
    t = min(cap, left - after)
    return round(t, 1) if t >= plan.child_min else 0.0


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a child started with start_new_session=True and everything it started (Inductor's
    compile workers), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class Watchdog:
    """Calls on_fire() once when `budget` is spent, unless finish() came first (see the module doc).
    `children`: the compile children running now, for on_fire to end."""

    def __init__(self, budget: Budget, on_fire, poll_s: float = 0.2):
        self.budget, self.on_fire, self.poll_s = budget, on_fire, poll_s
        self.lock = threading.Lock()
        self.state = "running"
        self.children: set = set()
        self._stop = threading.Event()

    def check(self) -> bool:
        """One poll: fire if the budget is spent and the run is still running. True if it fired."""
        with self.lock:
            if self.state != "running" or self.budget.left() > 0:
                return False
            self.state = "fired"
            self.on_fire()
            return True

    def finish(self) -> bool:
        """The run is done: no deadline may write after this. False if the deadline fired first."""
        with self.lock:
            if self.state != "running":
                return False
            self.state = "finished"
        self._stop.set()
        return True

    def start(self) -> None:
        threading.Thread(target=self._loop, name="bench-gpu-watchdog", daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.check():
                return
