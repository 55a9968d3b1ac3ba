"""`--repo REPO[@REF]` on the host (issue 12): the clone brought to REF before the job starts, the commit recorded,
and a clone that is not the fleet's, a ref that does not exist, local changes, or another job's checkout refused
before anything starts. The origin is a bare repository on this machine: git itself, no network."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

GIT_ID = ["-c", "user.name=orch-test", "-c", "user.email=orch-test@localhost"]


def git(*args: str, cwd: Path | None = None, env: dict | None = None) -> str:
    done = subprocess.run(["git", *GIT_ID, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def origin(jobhost, tmp_path) -> dict[str, str]:
    """A bare origin with main (two commits) and a release branch and tag, cloned as roles/orch_repos clones it
    into ~/work/alpha (with orch.branch main); {ref: commit}."""
    bare, seed = tmp_path / "alpha.git", tmp_path / "seed"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("init", "-q", "-b", "main", str(seed))
    (seed / "README").write_text("one\n")
    git("add", "README", cwd=seed)
    git("commit", "-q", "-m", "one", cwd=seed)
    git("tag", "v1", cwd=seed)
    git("checkout", "-q", "-b", "release", cwd=seed)
    (seed / "RELEASE").write_text("release\n")
    git("add", "RELEASE", cwd=seed)
    git("commit", "-q", "-m", "release", cwd=seed)
    git("checkout", "-q", "main", cwd=seed)
    (seed / "README").write_text("two\n")
    git("commit", "-q", "-am", "two", cwd=seed)
    git("push", "-q", str(bare), "main", "release", "v1", cwd=seed)
    clone = jobhost.home / "work" / "alpha"
    git("clone", "-q", str(bare), str(clone), env=jobhost.env)
    git("config", "--local", "orch.branch", "main", cwd=clone)
    commits = {ref: git("rev-parse", f"{ref}^{{commit}}", cwd=seed) for ref in ("main", "release", "v1")}
    return {**commits, "clone": str(clone), "seed": str(seed), "bare": str(bare)}


def failed(jobhost, **args) -> str:
    result = jobhost.module(state="started", **args)
    assert result.get("failed") is True, result
    return result["msg"]


def test_a_run_at_a_ref_records_that_commit_and_runs_in_the_clone(jobhost, origin):
    job = jobhost.start("at-release", "git rev-parse HEAD; pwd; cat RELEASE", repo="alpha@release")
    assert job["repo"] == {"name": "alpha", "ref": "release", "commit": origin["release"]}
    jobhost.wait_done("at-release")
    log = jobhost.log("at-release")
    assert origin["release"] in log and origin["clone"] in log and "release\n" in log  # cwd: the clone, at REF
    assert jobhost.record("at-release")["repo"]["commit"] == origin["release"]
    assert jobhost.job("at-release")["cwd"] == origin["clone"]


def test_the_default_ref_is_the_configured_branch_and_a_tag_or_commit_works_too(jobhost, origin):
    # origin moves on after the clone: the run fetches first
    seed = Path(origin["seed"])
    (seed / "README").write_text("three\n")
    git("commit", "-q", "-am", "three", cwd=seed)
    git("push", "-q", origin["bare"], "main", cwd=seed)
    newest = git("rev-parse", "HEAD", cwd=seed)
    assert jobhost.start("default", "true", repo="alpha")["repo"] == {"name": "alpha", "ref": "main", "commit": newest}
    jobhost.wait_done("default")
    assert jobhost.start("tagged", "true", repo="alpha@v1")["repo"]["commit"] == origin["v1"]
    jobhost.wait_done("tagged")
    short = origin["release"][:10]
    assert jobhost.start("by-id", "true", repo=f"alpha@{short}")["repo"]["commit"] == origin["release"]
    jobhost.wait_done("by-id")
    # local branches never move: the clone's main is where the clone left it
    assert git("rev-parse", "main", cwd=origin["clone"]) == origin["main"]


def test_local_changes_refuse_the_run_and_stay_as_they_were(jobhost, origin):
    clone = Path(origin["clone"])
    (clone / "README").write_text("my edit\n")
    (clone / "output.csv").write_text("a job's result\n")  # untracked: never a reason to refuse
    msg = failed(jobhost, name="dirty", command="true", repo="alpha@release")
    assert "repo alpha on this host has local changes (M README)" in msg and "never resets" in msg
    assert (clone / "README").read_text() == "my edit\n" and (clone / "output.csv").exists()
    assert git("rev-parse", "HEAD", cwd=clone) == origin["main"]  # not moved
    assert not (jobhost.logs / "dirty" / "job.json").exists()  # nothing started


def test_an_unknown_repo_or_ref_is_refused_before_anything_starts(jobhost, origin):
    msg = failed(jobhost, name="nope", command="true", repo="alpha@no-such-branch")
    assert "ref no-such-branch does not exist in repo alpha" in msg
    assert git("rev-parse", "HEAD", cwd=origin["clone"]) == origin["main"]
    (jobhost.home / "work" / "stray").mkdir()  # a folder in ~/work that is not a clone of the fleet's list
    git("init", "-q", str(jobhost.home / "work" / "stray"))
    msg = failed(jobhost, name="nope", command="true", repo="stray")
    assert "repo stray is not in the fleet's repos list (repos on this host: alpha)" in msg
    msg = failed(jobhost, name="nope", command="true", repo="alpha@-x")
    assert "invalid ref '-x'" in msg
    assert not (jobhost.logs / "nope" / "job.json").exists()


def test_a_clone_in_use_at_another_commit_is_refused_and_the_same_commit_is_shared(jobhost, origin):
    jobhost.start("holder", "sleep 60", repo="alpha@release")
    msg = failed(jobhost, name="mover", command="true", repo="alpha@main")
    assert "repo alpha is in use at another commit by holder" in msg
    assert git("rev-parse", "HEAD", cwd=origin["clone"]) == origin["release"]  # the holder's files stay
    assert jobhost.start("sharer", "true", repo="alpha@release")["repo"]["commit"] == origin["release"]
    jobhost.module(name="holder", state="stopped")
    assert jobhost.start("mover", "true", repo="alpha@main")["repo"]["commit"] == origin["main"]


def test_a_run_refused_for_another_reason_leaves_the_clone_where_it_was(jobhost, origin, moto_ssm):
    # the checkout is the last check: a notify parameter that does not exist refuses the run before the clone moves
    msg = failed(jobhost, name="unsent", command="true", repo="alpha@release", notify="/orch/test/notify/none",
                 proc_env=moto_ssm)  # fmt: skip
    assert "cannot read the notify webhook URL from SSM parameter /orch/test/notify/none" in msg
    assert git("rev-parse", "HEAD", cwd=origin["clone"]) == origin["main"]
