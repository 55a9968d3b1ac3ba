#!/usr/bin/python
# Copyright: orch contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The Ansible module `orch_job`: documentation, arguments, and a call into orch's host package (module_utils
# orch_host), which Ansible ships with the module. The package does the work: start, stop, remove, query.

DOCUMENTATION = r"""
---
module: orch_job
short_description: Run, inspect, stop and forget orch jobs in tmux on a job host
description:
  - Each job NAME runs in its own detached tmux session C(orch-NAME) (C(.) becomes C(,) in the session name).
    A small supervisor inside the session starts the command with C(bash -c) in a new process group, appends
    its stdout and stderr to C(~/logs/NAME/run.log) and writes C(~/logs/NAME/job.json) atomically. When the
    command ends, what it left running (background children, C(setsid) daemons) is ended too.
  - The sessions live on orch's own tmux server, C(tmux -L orch) (a socket in the user's C(TMUX_TMPDIR)), never
    on a server the user started (the default socket, or the one C(TMUX) names); the user's C(~/.tmux.conf)
    applies to it. Attach with C(tmux -L orch attach -t =orch-NAME).
  - The job's environment is exactly the run's, never the tmux server's. It is the module's own environment (the
    user's login environment, as sshd gives it) without what Ansible and a surrounding tmux add (C(ANSIBLE_*),
    C(_ANSIBLE_*), Ansible's payload on C(PYTHONPATH), C(TMUX), C(TMUX_PANE)), with C(PWD) the job's working
    directory; then O(env), then O(secrets), then C(ORCH_JOB=NAME) and C(ORCH_RUN_ID). Its record and log are
    under that C($HOME).
  - Job states are C(RUNNING), C(SUCCEEDED), C(FAILED), C(KILLED) (stopped by orch), C(OOM) (killed by its memory
    cap), C(INTERRUPTED) (ended, with its grace, by the host's spot interruption notice), C(LOST) (the supervisor
    vanished without an exit record, for example after a host reboot or when the tmux session was killed) and
    C(UNKNOWN) (its record cannot be read). C(RUNNING) is only reported while the supervisor process is alive on the
    current boot.
  - The work is done by orch's host package (module_utils C(orch_host)); the module installs that package as
    C(~/.orch/lib/<hash>/orch_host/) on the host, where the supervisors run from and the CLI's read paths
    (C(query), C(follow NAME)) import it.
  - Paths derive from C($HOME) of the user the module runs as.
options:
  name:
    description:
      - Job name, matching C(^[a-z0-9][a-z0-9._-]{0,62}$) and not containing C(..).
      - Required unless O(state=query), where omitting it returns every job on the host.
    type: str
  state:
    description:
      - V(started) starts the job; it fails when a job of that name is running. A finished job of the same name
        is replaced and its log appended to.
      - V(stopped) sends SIGTERM to every process of the job's run (its session, and any process whose environment
        holds its C(ORCH_RUN_ID), which a C(setsid) keeps) and SIGKILL after O(grace) seconds to whatever is left,
        and returns once none is left; the job ends C(KILLED). For a C(LOST) job whose supervisor died while its
        processes lived on (RV(job.live_processes)), it ends them the same way and records C(LOST) saying so.
        Stopping a finished job changes nothing.
      - V(absent) forgets a finished job (its C(job.json); the log too with O(purge_logs)). It refuses a running job,
        and a C(LOST) one whose processes still run.
      - V(query) returns one job (O(name); it fails when there is no such job) or all jobs, with states from live
        evidence.
    type: str
    choices: [started, stopped, absent, query]
    default: query
  command:
    description:
      - The command, run verbatim as C(bash -c COMMAND) (one argument, never interpolated into another shell
        string or a tmux command). Required with O(state=started); must not be empty.
    type: str
  cwd:
    description:
      - Working directory of the job. Relative paths are under C(~/work). It must exist. Default C(~/work), or the
        repository's clone with O(repo).
    type: path
  repo:
    description:
      - V(REPO) or V(REPO@REF). Before the job starts, the host fetches the clone C(~/work/REPO) of a repository of
        the C(orch_repos) role with its deploy key and checks out REF's commit (a branch of origin, a tag or a commit
        id; default the repository's configured branch) as a detached HEAD. A clone with changes to tracked files,
        an unknown repository or ref, or a clone in use at another commit by an active job is refused before
        anything starts. The job's record keeps C(repo) with the commit it ran.
    type: str
  notify:
    description:
      - Name of an SSM Parameter Store parameter (SecureString) that holds a webhook URL. The host fetches it when the
        job starts (a parameter that does not exist refuses the run) and, when the job ends, posts a Slack
        incoming-webhook message there (name, state, exit code, duration, peak memory, host). The URL stays in the
        supervisor's memory; the record's C(notify) says how the post went, and a failed post never changes the
        job's state.
    type: str
  env:
    description: Extra environment variables for the job, on top of the run's own environment.
    type: dict
    default: {}
  secrets:
    description:
      - Map of environment variable to SSM Parameter Store parameter name. The values are fetched on the host at
        job start with boto3 (credentials and region from the host, its instance role, C(AWS_REGION),
        C(AWS_ENDPOINT_URL)) and reach the job through the supervisor's memory only; they are never written to
        C(job.json), argv, tmux commands or files readable by other users.
    type: dict
    default: {}
  memory_max:
    description:
      - Memory cap such as V(8G) or V(512M) (powers of 1024). Every job runs in a systemd scope of its own in
        C(orch.slice), made by the root helper of the C(orch_memory) role (C(/usr/local/libexec/orch-scope), through
        sudo); this sets that scope's C(MemoryMax). Without the helper the job runs without a cap and the record says
        why in C(memory_cap).
    type: str
  grace:
    description: Seconds between SIGTERM and SIGKILL for O(state=stopped).
    type: int
    default: 10
  purge_logs:
    description: With O(state=absent), remove the job's log directory too.
    type: bool
    default: false
  tty:
    description:
      - With O(state=started), run the job on a terminal of its own (a pseudo-terminal, its controlling TTY); the
        supervisor relays its output into the log at full speed and into the tmux pane while a client is attached,
        and the pane's keys to the job, so prompts, C(pdb), Ctrl-C and full-screen programs work in C(orch attach).
        In the log the terminal's CRLF line ends are written as LF.
      - V(false) is batch mode (C(orch run --no-tty)) with no terminal, stdin C(/dev/null) and output written
        straight into the log, for jobs that print gigabytes (through a pty the kernel moves about 1/17 of what a
        file write moves).
    type: bool
    default: true
  queue:
    description:
      - With O(state=started), whether a job whose reservation (O(memory_max), else 1G) does not fit in
        C(orch.slice) beside the active jobs' waits C(QUEUED) for its turn (V(true)), or is refused at once with the
        figures and nothing started (V(false), C(orch run --no-queue)).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: In check mode nothing is started, signalled or removed; the result says what would happen.
notes:
  - "The installed package is also a script: C(query [NAME]) prints C({host, boot_id, jobs}) as JSON;
    C(follow NAME [--tail N]) prints the last N lines (10), streams the log across copytruncate and rename
    rotation until the job is no longer running, and exits with the job's exit code (SUCCEEDED 0, FAILED its
    code, KILLED and OOM 137, INTERRUPTED 143, FAILED by a signal and LOST 1, unknown job 2)."
  - A memory cap on a cgroup v1 host is only enforced for root (system scope); user scopes need cgroup v2.
  - O(state=started) waits until the supervisor has recorded the job (well under a second) and returns that record.
    It fails at once, naming the disk, when the disk holding C(~/logs/NAME) or C(~/.orch/run) has less than 1 MiB free,
    or when the supervisor ends before it records the job (saying why when it could).
  - A supervisor keeps 64 KiB in C(~/logs/NAME/.reserve) while its job runs, so that the job's end is recorded on a
    full disk too.
  - Two concurrent starts of one name are serialised by a lock in C(~/.orch/locks/); exactly one wins.
requirements:
  - tmux on the host
  - python3 on the host (the supervisor and the read paths use the standard library only)
  - boto3 on the host when O(secrets) is used
author:
  - orch contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Ensure the training job is started
  orch_job:
    name: train-a
    command: python train.py --epochs 10
    cwd: model-repo
    env:
      BATCH: "64"
    secrets:
      HF_TOKEN: /orch/orch/secrets/hf-token
    memory_max: 8G
    state: started
  register: orch_job_started

- name: Ensure the training job is stopped
  orch_job:
    name: train-a
    state: stopped
    grace: 30

- name: Read every job on the host
  orch_job:
  register: orch_jobs

- name: Ensure the finished job is forgotten, logs included
  orch_job:
    name: train-a
    state: absent
    purge_logs: true
"""

RETURN = r"""
job:
  description:
    - The job record (C(job.json)) with its state taken from live evidence. Returned for O(state=started),
      O(state=stopped), O(state=absent) (null when there was no such job) and O(state=query) with O(name).
  returned: when name is given
  type: dict
  contains:
    name:
      description: Job name.
      type: str
      sample: train-a
    run_id:
      description: Identifier of this run of the name.
      type: str
      sample: 6f1c0e4b9a2d4c7e8f00112233445566
    command:
      description: The command as given.
      type: str
      sample: python train.py
    cwd:
      description: Absolute working directory.
      type: str
      sample: /home/ec2-user/work/model-repo
    host:
      description: Host name of the job host.
      type: str
      sample: ip-10-0-0-12
    state:
      description: Job state.
      type: str
      sample: RUNNING
    started:
      description: Start time, ISO-8601 UTC.
      type: str
      sample: "2026-01-01T10:00:00Z"
    ended:
      description: End time, ISO-8601 UTC; null while running or when lost.
      type: str
      sample: "2026-01-01T11:00:00Z"
    exit_code:
      description: Exit code; null while running or when the job died of a signal.
      type: int
      sample: 3
    signal:
      description: Name of the signal that ended the job, or null.
      type: str
      sample: SIGKILL
    oom:
      description: Whether the kernel's OOM killer ended a process of the job (its scope counted the kill).
      type: bool
      sample: false
    oom_cause:
      description:
        - Which limit the OOM killer enforced, null unless RV(job.oom), from the counters of the job's scope and of
          C(orch.slice). V(job cap) is the job's own C(memory_max), V(host limit) is C(orch.slice) (all jobs
          together), V(host memory) is neither (the kernel's global OOM killer).
      type: str
      sample: job cap
    notify:
      description: With O(notify), the parameter, and once the job has ended, when the post was made, the HTTP status
        and an error (null when it went through); else null.
      type: dict
      sample: {parameter: /orch/orch/notify/slack, at: "2026-12-02T18:10:00Z", status: 200, error: null}
    repo:
      description: With O(repo), the repository, the ref asked for and the commit the job ran; else null.
      type: dict
      sample: {name: lros, ref: main, commit: 3f9c2e1d4b5a69788a7b6c5d4e3f2a1b0c9d8e7f}
    memory_max:
      description: Memory cap in bytes, or null.
      type: int
      sample: 8589934592
    memory_cap:
      description: "C(enforced), C(none), or C(not enforced: REASON)."
      type: str
      sample: none
    memory_peak:
      description:
        - Peak memory in bytes; the job scope's peak (C(memory.peak), v1 C(memory.max_usage_in_bytes)) when it has
          a scope, else the larger of the sampled sum of per-process peak RSS (every 2 s) and the largest reaped
          process's peak RSS.
      type: int
      sample: 1073741824
    memory_current:
      description:
        - Current memory in bytes of the job's processes (its scope's usage; without a scope the sum of RSS in the
          job's session); null unless running.
      type: int
      sample: 104857600
    live_processes:
      description:
        - With state C(LOST) after its supervisor died (C(supervisor gone)), how many processes of the run still
          live (V(stopped) ends them); null otherwise. Added by the query, not in C(job.json).
      type: int
      sample: 2
    pid:
      description: PID of the job's C(bash -c) process (also its session and process group id).
      type: int
      sample: 4242
    job_start:
      description: Start time (clock ticks since boot) of RV(job.pid); the run's session counts only processes
        started no earlier.
      type: int
      sample: 1195980
    pgid:
      description: Process group id of the job.
      type: int
      sample: 4242
    tmux_session:
      description: The tmux session name.
      type: str
      sample: orch-train-a
    tmux_socket:
      description: The socket name of the tmux server holding the session (C(tmux -L SOCKET)); orch's own server.
      type: str
      sample: orch
    memory_cgroup:
      description: Sysfs directory of the job scope's memory cgroup, or null when the job has no scope.
      type: str
      sample: /sys/fs/cgroup/orch.slice/orch-train-a-6f1c0e4b.scope
    cgroup:
      description: The job's cgroup (v2 path) when known.
      type: str
      sample: /user.slice/user-1000.slice/session-3.scope
    boot_id:
      description: Kernel boot id when the job started.
      type: str
      sample: 9a3c2f4e-0d5e-4a57-8f55-2a8a5f2b1c11
    init_start:
      description: Start time (clock ticks) of PID 1 when the job started; detects container restarts.
      type: int
      sample: 12
    supervisor_pid:
      description: PID of the supervisor.
      type: int
      sample: 4240
    supervisor_start:
      description: Start time (clock ticks) of the supervisor; beats PID reuse.
      type: int
      sample: 99120
    error:
      description: With state C(UNKNOWN), why the job's record cannot be read; the record holds only name, state, error.
      type: str
      sample: job.json is not valid JSON (truncated?) (~/logs/train-a/job.json)
    lost_reason:
      description: Why the job is LOST, or null.
      type: str
      sample: host rebooted
    log_note:
      description:
        - Why the job's log may lack lines, or null. Set when a write to C(run.log) failed (its end line included;
          the record still holds the job's true end) or when the log's disk had less than 64 KiB free while the job
          ran.
      type: str
      sample: "log incomplete: the disk holding ~/logs/train-a (mounted at /home) was full (0 bytes free)"
    secrets:
      description: Names of the environment variables filled from SSM (never their values).
      type: list
      elements: str
      sample: [HF_TOKEN]
    log:
      description: Path of the job's log file.
      type: str
      sample: /home/ec2-user/logs/train-a/run.log
    tty:
      description: Whether the job ran on a terminal (O(tty)); false in batch mode.
      type: bool
      sample: true
  sample:
    name: train-a
    state: RUNNING
    exit_code: null
jobs:
  description: Every job on the host (live states), oldest first.
  returned: when state is query and no name is given
  type: list
  elements: dict
  sample: [{name: train-a, state: SUCCEEDED, exit_code: 0}]
host:
  description: Host name of the job host.
  returned: always
  type: str
  sample: ip-10-0-0-12
boot_id:
  description: Current kernel boot id of the host.
  returned: always
  type: str
  sample: 9a3c2f4e-0d5e-4a57-8f55-2a8a5f2b1c11
msg:
  description: What was done, in words.
  returned: always
  type: str
  sample: started train-a
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.orch_host import control, records
from ansible.module_utils.orch_host.contract import JobError, check_name


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            state=dict(type="str", default="query", choices=["started", "stopped", "absent", "query"]),
            command=dict(type="str"),
            cwd=dict(type="path"),
            repo=dict(type="str"),
            notify=dict(type="str"),
            env=dict(type="dict", default={}),
            secrets=dict(type="dict", default={}, no_log=True),
            memory_max=dict(type="str"),
            grace=dict(type="int", default=10),
            purge_logs=dict(type="bool", default=False),
            tty=dict(type="bool", default=True),
            queue=dict(type="bool", default=True),
        ),
        required_if=[
            ("state", "started", ("name", "command")),
            ("state", "stopped", ("name",)),
            ("state", "absent", ("name",)),
        ],
        supports_check_mode=True,
    )
    facts = records.HostFacts()
    result = dict(changed=False, host=facts.host, boot_id=facts.boot_id)
    try:
        if module.params["name"] is not None:
            check_name(module.params["name"])
        tmux_bin = module.get_bin_path("tmux", required=True)
        result.update(control.apply(module.params, tmux_bin, module.check_mode, facts))
    except JobError as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
