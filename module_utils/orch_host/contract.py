"""What the laptop and the host agree on. The laptop imports these; nothing here does I/O."""

import json
import re

# A job name: also a directory under ~/logs and part of a tmux session name, so no '/', no '..', no shell syntax.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
NAME_RULE = "use 1-63 characters a-z 0-9 . _ -, starting with a letter or digit, no '..'"
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A memory size: a whole number of K, M, G or T (powers of 1024); B and iB suffixes are accepted. No decimals:
# 1.5G is 1536M, said so, never rounded behind the user's back.
MEMORY_RE = re.compile(r"([0-9]{1,7})([KMGT]?)(?:I?B)?", re.IGNORECASE)
# The largest cap that means anything: more than any EC2 instance has (24 TiB at most); a typo beyond it is refused.
MEMORY_LIMIT = 64 << 40
# The smallest: below it even a shell and Python's start-up (about 10M) would be killed (the helper's floor too).
MEMORY_FLOOR = 16 << 20
# What a job without --mem reserves in admission (orch_host/admission.py): bounded by orch.slice alone, it still takes
# a place, so a host full of reservations queues it. `orch run --help` says so.
DEFAULT_RESERVATION = 1 << 30
MEMORY_RULE = "use a whole number and K, M, G or T, like 512M or 8G (1536M, not 1.5G), from 16M to 64T"

RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
KILLED = "KILLED"
OOM = "OOM"
INTERRUPTED = "INTERRUPTED"  # ended by the host's spot interruption notice (orch_host/spot.py), not by its own fault
LOST = "LOST"
QUEUED = "QUEUED"
UNKNOWN = "UNKNOWN"  # the job's record cannot be read: the record says why in `error`
ACTIVE_STATES = (QUEUED, RUNNING)

# Exit statuses of the host's `follow` (and so of `orch logs --follow`): the job's own code when it ended FAILED
# with one, else by state. A job that itself exits 137 and a KILLED or OOM job both give 137: the state tells them
# apart (`orch status`). An INTERRUPTED job was sent SIGTERM: 143, as a shell reports it.
EXIT_BY_STATE = {SUCCEEDED: 0, FAILED: 1, KILLED: 137, OOM: 137, LOST: 1, INTERRUPTED: 143}


def exit_code_of(rec):
    """The exit status that stands for the ended job REC: its own code when it FAILED with one, else by state
    (`orch logs -f` and `orch wait` exit with it)."""
    if rec.get("state") == FAILED and isinstance(rec.get("exit_code"), int):
        return rec["exit_code"]
    return EXIT_BY_STATE.get(rec.get("state"), 1)


# An SSM Parameter Store name as orch takes one (--secret, --notify): a path, no "//".
SSM_PARAM_RE = re.compile(r"/[A-Za-z0-9_.\-/]{1,1010}")
# `--repo REPO[@REF]`: REPO is a name of roles/orch_repos' list; REF a branch, tag or commit by git's rules, narrowed
# (no "..", no leading "-", no spaces or shell characters).
REPO_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
REF_RE = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/+-]{1,200}(?<![./])")


def parse_repo(text):
    """'alpha@release' -> ('alpha', 'release'); 'alpha' -> ('alpha', None); a JobError for anything else."""
    name, at, ref = str(text).partition("@")
    if not REPO_RE.fullmatch(name) or name in (".", ".."):
        raise JobError(f"invalid repo {text!r}: use REPO or REPO@REF, REPO a name from the fleet's repos list")
    if at and not REF_RE.fullmatch(ref):
        raise JobError(f"invalid ref {ref!r} for repo {name}: give a branch, tag or commit")
    return name, (ref or None)


# Every job's environment names its run: the mark by which orch finds what the job started, setsid or not.
RUN_ID_ENV = "ORCH_RUN_ID"
# `query NAME` and `follow NAME` of a job the host does not have, or of an invalid name.
EXIT_UNKNOWN_JOB = 2


class JobError(Exception):
    """An expected failure on the host: one line a person can act on."""


def is_valid_name(name):
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None and ".." not in name


def check_name(name):
    """NAME, or a JobError saying what a name may be."""
    if not is_valid_name(name):
        raise JobError(f"invalid job name {json.dumps(name, ensure_ascii=True)}: {NAME_RULE}")
    return name


# orch's own tmux server: every tmux call orch makes names this socket (`tmux -L orch`, in the job user's
# TMUX_TMPDIR), so it never steers, lists or kills a server the user started, nor inherits that server's environment.
TMUX_SOCKET = "orch"


def session_name(name):
    """The tmux session of job NAME. tmux rewrites '.' and ':' in session names; ',' cannot occur in a name."""
    return "orch-" + name.replace(".", ",")


def memory_size(text):
    """'8G' -> (8589934592, '8G'); raises ValueError for anything but a positive size."""
    match = MEMORY_RE.fullmatch(str(text).strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(text)
    unit = match.group(2).upper()
    size = int(match.group(1)) * 1024 ** "_KMGT".index(unit or "_")
    if not MEMORY_FLOOR <= size <= MEMORY_LIMIT:
        raise ValueError(text)
    return size, match.group(1).lstrip("0") + unit


# SSM Parameter Store: where a fleet keeps its secrets (SecureString). Hosts may read deploy keys and job secrets
# (their IAM role allows exactly these prefixes); the fleet's SSH key is for the laptop only.
def ssm_key_parameter(fleet):
    return f"/orch/{fleet}/ssh/private-key"


def ssm_deploy_key_prefix(fleet):
    return f"/orch/{fleet}/deploy-keys/"


def ssm_secrets_prefix(fleet):
    return f"/orch/{fleet}/secrets/"
