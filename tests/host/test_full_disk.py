"""A full disk under ~/logs (issue 9, item 1): the record of how a job ended survives it, the record says the log is
incomplete, and a start on a full disk fails at once, naming the disk.

~/logs is a small tmpfs of the test's own: mounted directly as root, else in a user and mount namespace of the
test's own (unshare), where every host command of the test runs (nsenter) and the test reads the files through the
namespace's /proc/PID/root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from orch_host import control, records

TMPFS_SIZE = 2 << 20  # bytes: enough for a job to start, little enough to fill in a moment


class SmallDisk:
    """~/logs on a small tmpfs; PATH is where the test reads and writes it."""

    def __init__(self, path: Path, mount: str):
        self.path = path
        self.mount = mount  # the mount point as the host code sees it (what its messages name)

    def fill(self) -> None:
        """Take every free byte (a directory that holds no job.json is no job: query_jobs skips it)."""
        (self.path / "filler").mkdir(exist_ok=True)
        with open(self.path / "filler" / "blob", "ab", buffering=0) as f:
            for chunk in (b"\xff" * 65536, b"\xff"):  # then byte by byte: the last partial block too
                try:
                    while True:
                        f.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        shutil.rmtree(self.path / "filler", ignore_errors=True)


def _userns_works() -> bool:
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return False
    probe = ["unshare", "--user", "--map-root-user", "--mount", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def small_disk(jobhost, where: str):
    """HOME/WHERE on a small tmpfs of its own, for as long as the test runs."""
    target = jobhost.home / where
    target.mkdir()
    options = f"size={TMPFS_SIZE},mode=0755"
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "orch-test-disk", str(target)], check=True)
        try:
            yield SmallDisk(target, str(target))
        finally:
            jobhost.cleanup()
            if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "--lazy", str(target)], check=False)
        return
    if not _userns_works():
        pytest.skip(
            "a full disk needs root, or unshare and nsenter with unprivileged user namespaces, to mount a tmpfs"
        )
    script = 'mount -t tmpfs -o "$1" orch-test-disk "$2" && echo ready && exec sleep 3600'
    holder = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", options, str(target)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if holder.stdout.readline().strip() != "ready":
            pytest.skip("cannot mount a tmpfs in a user namespace here")
        jobhost.wrap = ["nsenter", f"--target={holder.pid}", "--user", "--mount", "--preserve-credentials"]
        view = Path(f"/proc/{holder.pid}/root") / str(target).lstrip("/")
        if where == "logs":
            jobhost.logs = view
        yield SmallDisk(view, str(target))
    finally:
        jobhost.cleanup()
        holder.kill()
        holder.wait()


@pytest.fixture
def small_logs(jobhost):
    with small_disk(jobhost, "logs") as disk:
        yield disk


@pytest.fixture
def small_orch(jobhost):
    with small_disk(jobhost, ".orch") as disk:
        yield disk


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in ("job.json", "run.log"))


# --- the supervisor ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pause", ["sleep 0.5; ", ""], ids=["fills-later", "fills-at-once"])
def test_a_job_that_fills_the_disk_ends_with_its_own_exit_code_and_a_note(jobhost, small_logs, pause):
    # fills-later: the job's first record is written as usual and its end finds the disk full; fills-at-once: the
    # disk may be full before the first record too
    jobhost.start("fill", f"{pause}yes filling | head -c 4M; echo after >&2; exit 7")
    job = jobhost.wait_done("fill")
    assert (job["state"], job["exit_code"], job["signal"]) == ("FAILED", 7, None), job
    assert job["log_note"].startswith("log incomplete: the disk holding ~/logs/fill"), job["log_note"]
    assert small_logs.mount in job["log_note"] and "full" in job["log_note"]
    assert leftovers(small_logs.path / "fill") == []  # no job.json.tmp.PID, and the reserve is gone once used
    assert jobhost.record("fill")["state"] == "FAILED"
    assert "orch-fill" not in jobhost.sessions()
    # query and follow still read it: follow exits with the job's own code
    assert jobhost.job("fill")["exit_code"] == 7
    follow = jobhost.script("follow", "fill")
    assert follow.returncode == 7 and b"filling\nfilling\n" in follow.stdout, follow  # the log's last lines
    assert jobhost.log("fill").startswith("[orch] job fill started")


def test_a_job_on_a_disk_with_room_has_no_note_and_leaves_no_reserve(jobhost, small_logs):
    jobhost.start("roomy", "echo hello; exit 3")
    job = jobhost.wait_done("roomy")
    assert (job["state"], job["exit_code"], job["log_note"]) == ("FAILED", 3, None)
    assert jobhost.log("roomy").endswith("hello\n[orch] job exited with code 3 (FAILED)\n")
    assert leftovers(small_logs.path / "roomy") == []


def test_a_running_job_keeps_a_reserve_for_its_record(jobhost, small_logs):
    jobhost.start("holding", "sleep 60")
    reserve = small_logs.path / "holding" / records.RESERVE_NAME
    assert reserve.stat().st_size == records.RESERVE_SIZE
    assert reserve.stat().st_blocks * 512 >= records.RESERVE_SIZE  # real blocks, not a sparse file
    # a hidden file in the job's directory is no job
    assert [j["name"] for j in jobhost.query()] == ["holding"]


def test_the_reserve_of_a_supervisor_that_died_goes_with_orch_rm(jobhost):
    job = jobhost.start("killed", "sleep 60", tty=False)  # batch: the job outlives its supervisor
    os.kill(job["supervisor_pid"], signal.SIGKILL)
    assert jobhost.wait_done("killed")["lost_reason"].startswith("supervisor gone")
    assert jobhost.module(name="killed", state="stopped", grace=0)["changed"]  # the job it left
    assert (jobhost.logs / "killed" / records.RESERVE_NAME).exists()
    assert jobhost.module(name="killed", state="absent")["changed"]
    assert sorted(p.name for p in (jobhost.logs / "killed").iterdir()) == ["run.log"]  # the log is kept


def test_a_disk_that_fills_while_the_job_runs_ends_it_with_the_true_code_and_a_note(jobhost, small_logs):
    jobhost.start("victim", "echo begun; while [ ! -e $HOME/work/go ]; do sleep 0.05; done; echo end; exit 5")
    small_logs.fill()
    (jobhost.home / "work" / "go").touch()
    job = jobhost.wait_done("victim")
    assert (job["state"], job["exit_code"]) == ("FAILED", 5)
    assert "full" in job["log_note"], job
    assert leftovers(small_logs.path / "victim") == []
    small_logs.free()
    assert jobhost.log("victim").startswith("[orch] job victim started")


# --- starting a job on a full disk ------------------------------------------------------------------------------


def test_starting_a_job_on_a_full_disk_fails_at_once_naming_the_disk(jobhost, small_logs):
    small_logs.fill()
    began = time.monotonic()
    res = jobhost.module(name="late", state="started", command="echo hi")
    took = time.monotonic() - began
    assert res["failed"] and took < control.START_TIMEOUT / 4, (took, res)
    msg = res["msg"]
    assert "\n" not in msg and "Traceback" not in msg
    assert msg.startswith("the disk holding ~/logs/late") and small_logs.mount in msg and "is full" in msg, msg
    assert "orch rm" in msg  # says what to do
    assert "orch-late" not in jobhost.sessions()
    assert not (small_logs.path / "late").exists() and not (jobhost.home / ".orch" / "run").exists()
    small_logs.free()
    jobhost.start("late", "echo hi")  # once there is room, it starts
    assert jobhost.wait_done("late")["state"] == "SUCCEEDED"


def test_starting_a_job_when_orchs_own_disk_is_full_fails_at_once_naming_it(jobhost, small_orch):
    small_orch.fill()
    res = jobhost.module(name="early", state="started", command="echo hi")
    assert res["failed"] and res["msg"].startswith(f"the disk holding ~/.orch/run (mounted at {small_orch.mount})")
    # let through (as when the disk fills in between): installing the package or writing the spec fails, and says so
    proc = _start_in_process(jobhost, "early", MIN_FREE=0, MIN_INODES=0)
    assert proc.returncode == 1 and not proc.stderr, proc
    assert proc.stdout.startswith(f"the disk holding ~/.orch (mounted at {small_orch.mount}) is full: 0 bytes free")
    assert sorted(p.name for p in small_orch.path.iterdir()) == ["filler", "lib", "locks"]
    assert not list((small_orch.path / "lib").iterdir())  # no half-installed copy
    assert "orch-early" not in jobhost.sessions()
    # the package installed while there was room: now the spec is what cannot be written
    small_orch.free()
    jobhost.start("warm", "true")
    jobhost.wait_done("warm")
    small_orch.fill()
    proc = _start_in_process(jobhost, "early", MIN_FREE=0, MIN_INODES=0)
    assert proc.returncode == 1 and not proc.stderr, proc
    assert proc.stdout.startswith(f"the disk holding ~/.orch (mounted at {small_orch.mount}) is full")
    assert not list((small_orch.path / "run").iterdir()) and "orch-early" not in jobhost.sessions()
    assert not (jobhost.logs / "early" / "job.json").exists()


def _start_in_process(jobhost, name: str, **patch) -> subprocess.CompletedProcess:
    """control.start_job in a process of its own (in the test's namespace, if any), with constants patched."""
    code = (
        "import json, shutil, sys\n"
        "from orch_host import control, records\n"
        "from orch_host.contract import JobError\n"
        "for key, value in json.loads(sys.argv[1]).items(): setattr(control, key, value)\n"
        "params = dict(name=sys.argv[2], command='echo hi', cwd='~/work', env={}, secrets={}, memory_max=None,"
        " grace=10)\n"
        "try: control.start_job(params, shutil.which('tmux'), False)\n"
        "except JobError as exc: print(exc); sys.exit(1)\n"
    )
    return subprocess.run(
        [*jobhost.wrap, sys.executable, "-c", code, json.dumps(patch), name],
        env={**jobhost.env, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_supervisor_that_finds_the_disk_full_refuses_the_job_and_says_so_at_once(jobhost, small_logs):
    # start_job's own check let through (as when the disk fills in between): the supervisor cannot keep the space
    # for the job's record, says so, and start_job reports it without waiting for its timeout
    small_logs.fill()
    began = time.monotonic()
    proc = _start_in_process(jobhost, "squeezed", MIN_FREE=0, MIN_INODES=0)
    took = time.monotonic() - began
    assert proc.returncode == 1 and took < control.START_TIMEOUT / 4, (took, proc)
    line = proc.stdout.strip()
    assert "\n" not in line and not proc.stderr, proc
    assert line.startswith("the supervisor of squeezed could not start the job: the disk holding ~/logs/squeezed")
    assert small_logs.mount in line
    assert "orch-squeezed" not in jobhost.sessions()
    assert not (small_logs.path / "squeezed" / "job.json").exists()
    assert leftovers(small_logs.path / "squeezed") == []
    assert not list((jobhost.home / ".orch" / "run").iterdir())


def test_a_supervisor_that_fails_before_its_first_record_is_not_waited_for(jobhost):
    # not the disk this time: run.log cannot be opened. The supervisor's reason comes back at once, in one line.
    (jobhost.logs / "dirlog" / "run.log").mkdir(parents=True)
    began = time.monotonic()
    res = jobhost.module(name="dirlog", state="started", command="echo hi")
    took = time.monotonic() - began
    assert res["failed"] and took < control.START_TIMEOUT / 4, (took, res)
    assert res["msg"].startswith("the supervisor of dirlog could not start the job: Is a directory ("), res
    assert "\n" not in res["msg"] and "orch-dirlog" not in jobhost.sessions()
    assert sorted(p.name for p in (jobhost.logs / "dirlog").iterdir()) == ["run.log"]  # no record, no reserve
    assert not list((jobhost.home / ".orch" / "run").iterdir())


def test_a_supervisor_that_ends_without_a_word_is_noticed_by_its_session_closing(jobhost):
    # nowhere to say why either (its error file cannot be written): its tmux session closing tells start_job
    (jobhost.logs / "mute" / "run.log").mkdir(parents=True)
    (jobhost.home / ".orch" / "run" / "mute.error").mkdir(parents=True)
    began = time.monotonic()
    res = jobhost.module(name="mute", state="started", command="echo hi")
    took = time.monotonic() - began
    assert res["failed"] and took < control.START_TIMEOUT / 4, (took, res)
    assert res["msg"] == (
        "the supervisor of mute could not start the job: it ended before recording the job and left no reason "
        f"(its tmux session closed); see {jobhost.home}/logs/mute/run.log"
    )
    assert "orch-mute" not in jobhost.sessions()


# --- the record's save on a full disk, by itself ----------------------------------------------------------------


def test_a_record_save_on_a_full_disk_uses_the_reserve_then_the_records_own_blocks(small_logs):
    job = small_logs.path / "unit"
    job.mkdir()
    path, reserve = str(job / "job.json"), str(job / records.RESERVE_NAME)
    records.make_reserve(reserve)
    records.save_record(path, {"state": "RUNNING"}, reserve)  # room: an ordinary atomic write, the reserve kept
    assert os.path.exists(reserve)
    small_logs.fill()
    with pytest.raises(OSError) as full:
        records.write_json_atomic(path + ".other", {"x": 1})  # the disk is full indeed
    assert full.value.errno == errno.ENOSPC
    assert leftovers(job) == [records.RESERVE_NAME]  # the failed write removed its tmp file
    records.save_record(path, {"state": "FAILED", "exit_code": 7, "pad": "x" * 2000}, reserve)
    assert json.loads(Path(path).read_text())["exit_code"] == 7
    assert leftovers(job) == []  # the reserve's blocks hold the record now
    small_logs.fill()  # what the rename freed (the old record's block) taken too
    records.save_record(path, {"state": "FAILED", "exit_code": 8}, reserve)  # no reserve: job.json's own blocks
    assert json.loads(Path(path).read_text()) == {"state": "FAILED", "exit_code": 8}
    with pytest.raises(OSError) as too_big:  # more than its blocks hold: refused, the record as it was
        records.save_record(path, {"state": "FAILED", "pad": "x" * 100000}, reserve)
    assert too_big.value.errno == errno.ENOSPC
    assert json.loads(Path(path).read_text()) == {"state": "FAILED", "exit_code": 8}
    assert leftovers(job) == []


def test_a_record_save_gives_the_reserve_back_when_writing_into_it_fails(tmp_path, monkeypatch):
    # A copy-on-write filesystem (btrfs, ZFS) allocates anew even when a file is overwritten in place: there, the
    # reserve is freed and the record written as a new file again.
    path, reserve = str(tmp_path / "job.json"), str(tmp_path / records.RESERVE_NAME)
    records.make_reserve(reserve)
    calls = []
    real_write_new = records.write_atomic

    def write_new(target, text):
        calls.append(("new", os.path.exists(reserve)))
        if os.path.exists(reserve):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_new(target, text)

    def write_into(target, text, keep_size=True):
        calls.append(("into", target))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(records, "write_atomic", write_new)
    monkeypatch.setattr(records, "_write_into", write_into)
    records.save_record(path, {"state": "SUCCEEDED"}, reserve)
    assert calls == [("new", True), ("into", reserve), ("new", False)]
    assert json.loads(Path(path).read_text()) == {"state": "SUCCEEDED"} and not os.path.exists(reserve)


def test_a_record_save_that_fails_otherwise_raises_and_leaves_no_tmp(tmp_path, monkeypatch):
    path = tmp_path / "job.json"
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        records.save_record(str(path), {"state": "RUNNING"}, None)
    assert list(tmp_path.iterdir()) == []


def test_stop_on_a_full_orch_disk_still_ends_the_job_killed(jobhost, small_orch):
    # stop used to write a stop file under ~/.orch/run first: on a full disk that was a traceback and nothing stopped
    job = jobhost.start("stuck", "sleep 60")
    small_orch.fill()
    result = jobhost.module(name="stuck", state="stopped", grace=1)
    assert result["changed"] and result["job"]["state"] == "KILLED", result
    assert not jobhost.alive(job["pid"])


# --- a log directory removed while the job runs (bad input: never a vanished job or a lost end) ----------------------


def test_a_removed_log_directory_comes_back_with_the_record_and_its_true_end(jobhost):
    jobhost.start("gone", "sleep 1.5; exit 5")
    shutil.rmtree(jobhost.home / "logs" / "gone")
    # while it runs: seen again (and stoppable), saying what was lost
    running = jobhost.wait_until(lambda: jobhost.query("gone"), "the record to be written again")[0]
    assert running["state"] == "RUNNING" and running["log_note"].startswith("log lost: ~/logs/gone was removed")
    job = jobhost.wait_done("gone")
    assert (job["state"], job["exit_code"]) == ("FAILED", 5)
    assert job["log_note"] == "log lost: ~/logs/gone was removed while the job ran; what it wrote since is gone"
