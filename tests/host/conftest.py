"""Fixtures for the host side of jobs: library/orch_job.py and its host package against a real tmux, in a throwaway
$HOME.

Every test gets its own HOME (under tmp_path) and its own tmux servers (TMUX_TMPDIR in a short temp dir: the
socket path must stay under 108 bytes): orch's (`-L orch`) and, when a test starts one, the default one, standing
for a server the user started. Teardown kills what the jobs left: their process groups, both tmux servers, and
waits for the supervisors to go.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from orch_host import bundle
from orch_host.contract import TMUX_SOCKET

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "library" / "orch_job.py"
RUN_MODULE = Path(__file__).resolve().parent / "run_module.py"


def module_argv(args_file: Path) -> list[str]:
    """The module run from an args file, as Ansible runs it, with orch_host importable as Ansible ships it."""
    return [sys.executable, str(RUN_MODULE), str(MODULE), str(args_file)]


def script_argv(*argv: str) -> tuple[list[str], bytes]:
    """The host package's script as the CLI's read paths run it over ssh: (argv, stdin)."""
    remote, payload = bundle.read_path_command(list(argv))
    return [sys.executable, *remote[1:]], payload


def proc_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


class JobHost:
    """A job host in a temp HOME: runs the module as Ansible does (args file) and the script verbs as the read paths
    do (the bootstrap, with the package's files on stdin)."""

    alive = staticmethod(proc_alive)
    module_argv = staticmethod(module_argv)

    def __init__(self, root: Path, tmux_dir: str):
        self.root = root
        self.home = root / "home"
        (self.home / "work").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TMUX", "AWS_", "ANSIBLE_"))}
        env.update(HOME=str(self.home), TMUX_TMPDIR=tmux_dir, LC_ALL="C.UTF-8", PYTHONDONTWRITEBYTECODE="1")
        self.env = env
        self.calls = 0
        # Where the test reads ~/logs, and the argv prefix every host command runs under: both change only when a
        # test runs the host in a mount namespace of its own (tests/host/test_full_disk.py without root).
        self.logs = self.home / "logs"
        self.wrap: list[str] = []

    # --- the module, as Ansible runs an old-style args file -------------------------------------------------
    def module_args_file(self, check_mode: bool = False, **args) -> Path:
        self.calls += 1
        path = self.root / f"args-{self.calls}.json"
        payload = dict(args)
        if check_mode:
            payload["_ansible_check_mode"] = True
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
        return path

    def module(self, check_mode: bool = False, proc_env: dict | None = None, **args) -> dict:
        path = self.module_args_file(check_mode, **args)
        proc = subprocess.run(
            [*self.wrap, *module_argv(path)],
            env={**self.env, **(proc_env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(
                f"module printed no JSON (rc={proc.returncode}): {proc.stdout!r} {proc.stderr!r}"
            ) from None
        assert "Traceback" not in proc.stderr, proc.stderr
        assert (proc.returncode != 0) == bool(result.get("failed")), (proc.returncode, result)
        return result

    def module_async(self, **args) -> subprocess.Popen:
        path = self.module_args_file(**args)
        return subprocess.Popen(
            [*self.wrap, *module_argv(path)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def start(self, name: str, command: str, **args) -> dict:
        result = self.module(name=name, state="started", command=command, **args)
        assert result.get("changed") is True and not result.get("failed"), result.get("msg", result)
        return result["job"]

    # --- the script, sent on stdin as the CLI's read paths do over ssh --------------------------------------
    def script(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd, payload = script_argv(*argv)
        return subprocess.run(
            [*self.wrap, *cmd],
            input=payload,
            env=self.env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def follow_async(self, name: str, *argv: str) -> subprocess.Popen:
        return self.script_async("follow", name, *argv)

    def script_async(self, *argv: str) -> subprocess.Popen:
        """The script started, its stdin fed from a thread; stdout and stderr are pipes."""
        cmd, payload = script_argv(*argv)
        pipe = subprocess.PIPE
        proc = subprocess.Popen([*self.wrap, *cmd], env=self.env, stdin=pipe, stdout=pipe, stderr=pipe)
        stdin, proc.stdin = proc.stdin, None  # communicate() must not touch it

        def feed():
            # From a thread, as ssh takes it: the installed copy reads no stdin, and a package bigger than a pipe
            # buffer (64 KiB) would block a plain write until the follow ends.
            try:
                stdin.write(payload)
                stdin.close()
            except OSError:  # the script ended without reading it all
                pass

        threading.Thread(target=feed, daemon=True).start()
        return proc

    def query(self, name: str | None = None) -> list[dict]:
        proc = self.script("query", *([name] if name else []))
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["host"] == socket.gethostname()
        return data["jobs"]

    def job(self, name: str) -> dict:
        jobs = self.query(name)
        assert len(jobs) == 1, jobs
        return jobs[0]

    def wait_until(self, predicate, what: str, timeout: float = 60):
        """Poll PREDICATE (a safety bound, not a timed assertion: slow machines only wait longer)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}")
            time.sleep(0.05)

    def wait_done(self, name: str) -> dict:
        return self.wait_until(
            lambda: (lambda j: j if j["state"] not in ("RUNNING", "QUEUED") else None)(self.job(name)), f"{name} to end"
        )

    def log(self, name: str) -> str:
        return (self.logs / name / "run.log").read_text()

    def wait_log(self, name: str, text: str) -> str:
        path = self.logs / name / "run.log"
        return self.wait_until(lambda: path.exists() and text in path.read_text() and path.read_text(), repr(text))

    def record(self, name: str) -> dict:
        return json.loads((self.logs / name / "job.json").read_text())

    def tmux(
        self, *args: str, socket: str | None = TMUX_SOCKET, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        """tmux on orch's own server (SOCKET), or on the default server, the user's (SOCKET None); ENV on top."""
        server = ["-L", socket] if socket else []
        return subprocess.run(
            [*self.wrap, "tmux", *server, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )

    def sessions(self, socket: str | None = TMUX_SOCKET) -> list[str]:
        res = self.tmux("list-sessions", "-F", "#{session_name}", socket=socket)
        return res.stdout.split() if res.returncode == 0 else []

    # --- teardown -------------------------------------------------------------------------------------------
    def cleanup(self) -> None:
        records = []
        logs = self.logs
        for path in logs.glob("*/job.json") if logs.is_dir() else []:
            try:
                records.append(json.loads(path.read_text()))
            except ValueError:
                continue
        for rec in records:
            if isinstance(rec.get("pgid"), int):
                try:
                    os.killpg(rec["pgid"], signal.SIGKILL)
                except OSError:
                    pass
        for server in (TMUX_SOCKET, None):  # orch's, and a user's a test started (both in this test's TMUX_TMPDIR)
            self.tmux("kill-server", socket=server)
        supervisors = [r["supervisor_pid"] for r in records if isinstance(r.get("supervisor_pid"), int)]
        deadline = time.monotonic() + 30
        while any(proc_alive(pid) for pid in supervisors) and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def jobhost(tmp_path):
    tmux_dir = tempfile.mkdtemp(prefix="orch-tmux-")
    host = JobHost(tmp_path, tmux_dir)
    try:
        yield host
    finally:
        host.cleanup()
        shutil.rmtree(tmux_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_ssm():
    """A moto server on 127.0.0.1 (SSM Parameter Store for secrets); yields the AWS environment for it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "ap-northeast-1",
    }
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
