"""Test harness: JupyterLab on loopback + Debian's chromium driven by Playwright.

    browser = find_chromium()              # /usr/bin/chromium, or Unavailable with the reason
    with LabServer(root, env) as lab:      # jupyter lab on 127.0.0.1, own token and settings
        page.goto(lab.url("lab/tree/x.ipynb"))

The server is started as `make lab` starts it (lmexpr_nb.runner.lab.lab_command: `python -m
jupyterlab`, one process with no `jupyter` launcher in between, the kit's contents manager,
--allow-root only as root) in its own session, with JUPYTERLAB_SETTINGS_DIR /
JUPYTERLAB_WORKSPACES_DIR / JUPYTER_CONFIG_DIR / JUPYTER_RUNTIME_DIR / JUPYTER_DATA_DIR in a
scratch folder: document autosave off (nothing the test opens is ever
written back), no news or update checks (nothing reaches the internet). `stop()` asks the
server to shut down (which ends its kernels), then ends whatever is left of it and of its
child processes (the kernels) by PID: SIGTERM, then SIGKILL.

Chromium is installed by `make test` before pytest starts (`python3 tests/browser.py
install-chromium`: nothing to do when /usr/bin/chromium is there, else apt-get as root), never
inside a test.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


class Unavailable(RuntimeError):
    """The browser cannot be had here (the reason is the message)."""


def find_chromium(install: bool = False, log=print) -> str:
    """The chromium binary. With `install`, Debian's `chromium` package is installed with apt-get
    when it is missing and we are root. Raises Unavailable with the reason otherwise."""
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    if not install:
        raise Unavailable(f"{CHROMIUM} is missing (`make test` installs it as root; else apt-get install chromium)")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise Unavailable(f"{CHROMIUM} is missing and we are not root to `apt-get install chromium`")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"{CHROMIUM} is missing and there is no apt-get to install it")
    t0 = time.perf_counter()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    wait = ["-o", "DPkg::Lock::Timeout=300"]          # another apt run holds the lock: wait for it
    for cmd in (["apt-get", *wait, "update", "-q"], ["apt-get", *wait, "install", "-y", "-q", "chromium"]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
            raise Unavailable(f"`{' '.join(cmd)}` failed ({r.returncode}): {tail[0]}")
    if not Path(CHROMIUM).is_file():
        raise Unavailable(f"apt-get installed chromium but {CHROMIUM} is still missing")
    log(f"installed chromium with apt-get in {time.perf_counter() - t0:.0f} s")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """PIDs of every descendant of `pid` (from /proc; empty where /proc is absent)."""
    parent = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"checkForUpdates": False,
                                                                         "fetchNews": "false"},
}


class LabServer:
    """`jupyter lab` serving `root` on 127.0.0.1 with a random token (see the module doc)."""

    def __init__(self, root, scratch, env: dict | None = None, extra: list[str] | None = None, timeout: float = 90):
        self.root, self.scratch = Path(root), Path(scratch)
        self.token, self.port = secrets.token_hex(16), free_port()
        self.env = dict(os.environ if env is None else env)
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.pids: list[int] = []          # every PID seen under the server (kernels)
        self.extra = list(extra or [])
        self.said: list[str] = []

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def start(self) -> "LabServer":
        settings, workspaces = self.scratch / "lab-settings", self.scratch / "lab-workspaces"
        for name, value in LAB_SETTINGS.items():
            p = settings / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(value))
        workspaces.mkdir(parents=True, exist_ok=True)
        env = dict(self.env, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(workspaces),
                   JUPYTER_CONFIG_DIR=str(self.scratch / "jupyter-config"),
                   JUPYTER_RUNTIME_DIR=str(self.scratch / "jupyter-runtime"),
                   JUPYTER_DATA_DIR=str(self.scratch / "jupyter-data"))
        from lmexpr_nb.runner.lab import lab_command
        cmd = lab_command(self.root, ["--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                                      f"--IdentityProvider.token={self.token}", "--ServerApp.port_retries=0",
                                      "--LabApp.news_url="] + self.extra, log=self.say)
        self.log = open(self.scratch / "jupyter-lab.log", "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.root)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}: "
                                   f"{(self.scratch / 'jupyter-lab.log').read_text()[-2000:]}")
            try:
                self.api("status")
                return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {self.timeout} s")

    def say(self, msg: str) -> None:
        self.said.append(msg)

    def kernels(self) -> list[dict]:
        return self.api("kernels")

    def stop(self) -> list[int]:
        """Shut the server and its kernels down; returns the PIDs that had to be signalled."""
        if self.proc is None:
            return []
        pid = self.proc.pid
        self.pids = sorted(set(self.pids) | set(children(pid)))
        try:
            self.api("shutdown", method="POST")
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            pass
        signalled = []
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            left = [p for p in [pid] + self.pids if alive(p)]
            for p in left:
                try:
                    os.kill(p, sig)
                    signalled.append(p)
                except ProcessLookupError:
                    pass
            t0 = time.perf_counter()
            while any(alive(p) for p in left) and time.perf_counter() - t0 < wait:
                if self.proc.poll() is None:
                    time.sleep(0.1)
                else:
                    time.sleep(0.1)
        self.proc.poll()
        self.log.close()
        self.proc = None
        return signalled

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":          # `make test`'s setup step: python3 tests/browser.py install-chromium
    import sys
    if sys.argv[1:] != ["install-chromium"]:
        sys.exit("usage: python3 tests/browser.py install-chromium")
    try:
        print(f"chromium for the browser tests: {find_chromium(install=True)}")
    except Unavailable as e:      # the browser tests then skip with this reason (fail where CI is set)
        print(f"chromium for the browser tests: not available: {e}")
