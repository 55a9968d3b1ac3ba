"""A job's repository: `orch run --repo REPO[@REF]` brings ~/work/REPO to REF before the job starts, and the job
records the commit it ran.

The fleet's repositories are the clones roles/orch_repos made: each has its branch in its own git config
(`orch.branch`) and fetches with its own deploy key (`core.sshCommand`). Nothing local is ever reset: a clone with
changes to tracked files is refused, naming them, and the checkout is a detached HEAD at REF's commit, so local
branches and commits stay as they were. Untracked files (a job's outputs) do not count as changes; git itself
refuses a checkout that would overwrite one. While an active job runs in the clone at another commit, a checkout
would change the files under it: refused too."""

import os
import subprocess

from . import records
from .contract import ACTIVE_STATES, JobError, parse_repo

FETCH_TIMEOUT = 120  # seconds: a git server that does not answer must not hang `orch run`
LIST_LIMIT = 5  # changed files named in a refusal


def _git(path, *args, timeout=30):
    try:
        return subprocess.run(
            ["git", "-C", path, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C"),
        )
    except FileNotFoundError:
        raise JobError("git is not installed on this host (run orch configure)") from None
    except subprocess.TimeoutExpired:
        raise JobError(f"git {args[0]} in {path} did not finish within {timeout} s") from None


def _last(proc):
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"git exited {proc.returncode}"


def known(name):
    """(its clone's path, its configured branch); a JobError naming the fleet's repositories if NAME is not one."""
    work = os.path.join(records.home(), "work")
    path = os.path.join(work, name)
    branch = _git(path, "config", "--local", "orch.branch").stdout.strip() if os.path.isdir(path) else ""
    if not branch:
        names = sorted(
            n for n in (os.listdir(work) if os.path.isdir(work) else []) if os.path.isdir(os.path.join(work, n, ".git"))
        )
        ours = [n for n in names if _git(os.path.join(work, n), "config", "--local", "orch.branch").stdout.strip()]
        said = ", ".join(ours) if ours else "none: set orch_repos_list and run orch configure"
        raise JobError(f"repo {name} is not in the fleet's repos list (repos on this host: {said})")
    return path, branch


def dirty(path):
    """The tracked files with local changes, as `git status --porcelain` names them."""
    proc = _git(path, "status", "--porcelain", "--untracked-files=no")
    if proc.returncode != 0:
        raise JobError(f"cannot read the state of {path}: {_last(proc)}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def _resolve(path, name, ref):
    """REF's commit: a branch of origin, a tag, or a commit id, in that order."""
    for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
        proc = _git(path, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{candidate}^{{commit}}")
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    raise JobError(f"ref {ref} does not exist in repo {name} (no branch, tag or commit of that name on its origin)")


def active_elsewhere(name, commit, jobs):
    """The active jobs of JOBS (query records) that run in repo NAME at a commit other than COMMIT."""
    return [
        j["name"]
        for j in jobs
        if j.get("state") in ACTIVE_STATES and (j.get("repo") or {}).get("name") == name
        and (j.get("repo") or {}).get("commit") != commit
    ]  # fmt: skip


def prepare(text, jobs, check_mode=False):
    """Bring the clone of repo TEXT (REPO[@REF]) to its REF; returns {"name", "ref", "commit", "path"}. JOBS are
    the host's job records (another active job's repo must not move under it). In check mode, nothing is fetched
    or checked out, and the commit is the ref's as last fetched."""
    name, ref = parse_repo(text)
    path, branch = known(name)
    ref = ref or branch
    changed = dirty(path)
    if changed:
        shown = "; ".join(changed[:LIST_LIMIT]) + (
            f"; and {len(changed) - LIST_LIMIT} more" if len(changed) > LIST_LIMIT else ""
        )
        raise JobError(
            f"repo {name} on this host has local changes ({shown}): orch never resets a clone; "
            f"commit, stash or discard them in ~/work/{name} first"
        )
    if not check_mode:
        fetched = _git(path, "fetch", "--quiet", "--prune", "--tags", "origin", timeout=FETCH_TIMEOUT)
        if fetched.returncode != 0:
            raise JobError(f"cannot fetch repo {name} from its origin: {_last(fetched)}")
    commit = _resolve(path, name, ref)
    others = active_elsewhere(name, commit, jobs)
    if others:
        raise JobError(
            f"repo {name} is in use at another commit by {', '.join(others)}: checking out {ref} would change "
            "its files; wait for it to end, or run at the same ref"
        )
    if not check_mode:
        moved = _git(path, "checkout", "--quiet", "--detach", commit)
        if moved.returncode != 0:
            raise JobError(f"cannot check out {ref} in repo {name}: {_last(moved)}")
        head = _git(path, "rev-parse", "HEAD").stdout.strip()
        if head != commit:
            raise JobError(f"repo {name} is at {head[:12]} after checking out {ref} ({commit[:12]})")
    return {"name": name, "ref": ref, "commit": commit, "path": path}
