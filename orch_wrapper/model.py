"""What crosses module boundaries: small frozen dataclasses and pure helpers over them. No I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from orch_host import contract

from .errors import ExitCode, OrchError

ACTIVE = ("QUEUED", "RUNNING")
RECENT = timedelta(hours=24)  # `orch status` shows finished jobs that ended within this, `--all` shows every job


# --- hosts ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str  # inventory hostname (the Name tag)
    instance_id: str
    instance_type: str
    state: str  # EC2 state name: running, stopped, ...
    access: str  # orch-access tag: ssm | public | private | endpoint
    ssh_host: str  # ansible_host
    ssh_port: int  # ansible_port
    ssh_user: str  # ansible_user
    ssh_common_args: tuple[str, ...] = ()  # ansible_ssh_common_args, split as Ansible splits it

    @property
    def address(self) -> str:
        return f"{self.ssh_host}:{self.ssh_port}"

    @property
    def proxy_command(self) -> str | None:
        args = list(self.ssh_common_args)
        for i, arg in enumerate(args):
            value = arg[2:] if arg.startswith("-o") and len(arg) > 2 else (args[i + 1] if arg == "-o" else "")
            key, _, rest = value.partition("=")
            if key.strip().lower() == "proxycommand":
                return rest.strip()
        return None

    @property
    def usable(self) -> bool:
        return self.state in ("", "running")


@dataclass(frozen=True)
class HostReply:
    host: Host
    data: dict[str, Any] | None  # the script's JSON, or None
    error: str | None  # why there is no data


@dataclass(frozen=True)
class HostMemory:
    """A host's memory as its query reports it (orch_host.memory.host_memory), in bytes; None where unknown."""

    memory_total: int | None = None  # what the host can use: the lesser of MemTotal and its own cgroup limit
    memory_allocatable: int | None = None  # orch.slice's limit: the total less the host's reserve
    memory_reserved: int | None = None  # what active jobs reserve (their --mem)
    memory_used: int | None = None  # what orch.slice's jobs use now
    memory_caps: str | None = None  # "enforced", or "not enforced: why"

    @classmethod
    def from_reply(cls, data: dict[str, Any] | None) -> HostMemory | None:
        memory = (data or {}).get("memory")
        if not isinstance(memory, dict):
            return None

        caps = memory.get("memory_caps")
        return cls(
            memory_total=_bytes(memory.get("memory_total")),
            memory_allocatable=_bytes(memory.get("memory_allocatable")),
            memory_reserved=_bytes(memory.get("memory_reserved")),
            memory_used=_bytes(memory.get("memory_used")),
            memory_caps=caps if isinstance(caps, str) else None,
        )


# --- jobs as the host reports them ---------------------------------------------------------------------------------


def _bytes(value: Any) -> int | None:
    """An int the host wrote, or None (a bool or anything else is not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: Any) -> float | None:
    """A number of seconds (or a time, in seconds since the epoch) the host wrote, or None."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class HostIdle:
    """A host's idle auto-stop as its query reports it (orch_host.autostop.brief); None where unknown."""

    mode: str | None = None  # jobs_and_sessions | jobs | off
    idle_minutes: int | None = None
    busy: tuple[str, ...] = ()  # what kept it up at the last check ("2 jobs", "1 tmux client attached")
    stops_in: float | None = None  # seconds until it stops itself, while idle
    stopping: float | None = None  # when it began stopping itself
    uptime: float | None = None  # seconds since the host (its PID 1) started

    @classmethod
    def from_reply(cls, data: dict[str, Any] | None) -> HostIdle | None:
        idle = (data or {}).get("autostop")
        if not isinstance(idle, dict):
            return None

        busy = idle.get("busy")
        return cls(
            mode=idle.get("mode") if isinstance(idle.get("mode"), str) else None,
            idle_minutes=_bytes(idle.get("idle_minutes")),
            busy=tuple(str(b) for b in busy) if isinstance(busy, list) else (),
            stops_in=_seconds(idle.get("stops_in")),
            stopping=_seconds(idle.get("stopping")),
            uptime=_seconds(idle.get("uptime")),
        )

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "busy": list(self.busy)}


@dataclass(frozen=True)
class Job:
    name: str
    host: str  # inventory name of the host
    state: str
    started: str | None = None
    ended: str | None = None
    exit_code: int | None = None
    signal: str | None = None  # the name of the signal that ended the job ("SIGTERM"), as the host records it
    memory: int | None = None  # bytes now (running) or at peak (finished)
    memory_max: str | int | None = None
    memory_cap: str | None = None  # "none", "enforced", or "not enforced: why" (as the host found it)
    command: str = ""
    cwd: str = ""
    tmux_session: str = ""
    tmux_socket: str = ""  # the host's tmux server for the job (`tmux -L`); "" in older records: the default server
    lost_reason: str | None = None
    oom_cause: str | None = None  # with state OOM: which limit killed it ("job cap", ...), as the host read it
    error: str | None = None  # with state UNKNOWN: why the host cannot read the job's record
    live_processes: int = 0  # with state LOST: processes of the run still alive after its supervisor died
    tty: bool | None = None  # ran on a terminal (True), in batch mode (False: --no-tty), or unknown (older hosts)
    log_note: str | None = None  # why the job's log may lack lines (a full disk), as its supervisor found it
    memory_peak: int | None = None  # bytes, the job's peak (its scope's, as the host read it); None while unknown
    queue_position: int | None = None  # with state QUEUED: 1 = next to start when memory frees
    reservation: int | None = None  # bytes of orch.slice the job holds in admission (--mem, else the default)
    queued: str | None = None  # when it joined its host's memory queue (first come, first served), if it waited
    admitted_at: str | None = None  # when the host's memory queue let it start (microseconds)
    repo: dict[str, str] | None = None  # with --repo: {"name", "ref", "commit"}, the commit the job ran
    notify: dict[str, Any] | None = None  # with --notify: {"parameter"}, then {"at", "status", "error"} once posted

    @classmethod
    def from_record(cls, host: str, record: dict[str, Any]) -> Job:
        state = str(record.get("state") or "UNKNOWN")
        memory = record.get("memory_current") if state in ACTIVE else None
        if memory is None:
            memory = record.get("memory_peak")
        return cls(
            name=str(record.get("name") or ""),
            host=host,
            state=state,
            started=record.get("started"),
            ended=record.get("ended"),
            exit_code=record.get("exit_code"),
            signal=record.get("signal"),
            memory=int(memory) if isinstance(memory, (int, float)) else None,
            memory_max=record.get("memory_max"),
            memory_cap=record.get("memory_cap"),
            command=str(record.get("command") or ""),
            cwd=str(record.get("cwd") or ""),
            tmux_session=str(record.get("tmux_session") or ""),
            tmux_socket=str(record.get("tmux_socket") or ""),
            lost_reason=record.get("lost_reason"),
            oom_cause=record.get("oom_cause"),
            error=record.get("error"),
            live_processes=int(record.get("live_processes") or 0),
            log_note=record.get("log_note"),
            tty=record.get("tty") if isinstance(record.get("tty"), bool) else None,
            memory_peak=_bytes(record.get("memory_peak")),
            queue_position=_bytes(record.get("queue_position")),
            reservation=_bytes(record.get("reservation")),
            queued=record.get("queued") if isinstance(record.get("queued"), str) else None,
            admitted_at=record.get("admitted_at") if isinstance(record.get("admitted_at"), str) else None,
            repo=_repo(record.get("repo")),
            notify=record.get("notify") if isinstance(record.get("notify"), dict) else None,
        )

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def has_processes(self) -> bool:
        """Whether anything of the job still runs: active, or LOST with processes its dead supervisor left."""
        return self.active or self.live_processes > 0


def _repo(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) for k in ("name", "ref", "commit")):
        return None
    return {k: value[k] for k in ("name", "ref", "commit")}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def shown_by_default(job: Job, now: datetime) -> bool:
    if job.has_processes:
        return True
    ended = parse_time(job.ended) or parse_time(job.started)
    return ended is None or now - ended <= RECENT


def collect(replies: Sequence[HostReply]) -> tuple[list[Job], dict[str, str]]:
    jobs: list[Job] = []
    errors: dict[str, str] = {}
    for reply in replies:
        if reply.data is None:
            errors[reply.host.name] = reply.error or "no reply"
            continue
        jobs += [Job.from_record(reply.host.name, rec) for rec in reply.data["jobs"] if isinstance(rec, dict)]
    jobs.sort(key=lambda j: (j.started or "", j.name))
    return jobs, errors


def tmux_session(job: Job) -> str:
    return job.tmux_session or contract.session_name(job.name)


def tmux_server(job: Job) -> list[str]:
    """tmux's options that pick the job's server on its host: the socket its record names (orch's own,
    contract.TMUX_SOCKET); none for a record of an older host that names none (its job runs on the default server)."""
    return ["-L", job.tmux_socket] if job.tmux_socket else []


# --- playbook runs -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    status: str  # ansible-runner's status: successful, failed, timeout, canceled
    rc: int
    ok: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # host -> `res` of each runner_on_ok event
    failed: dict[str, str] = field(default_factory=dict)  # host -> msg of the first failed task
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> msg
    stats: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> ok/changed/failed/unreachable/skipped

    def check(self) -> RunResult:
        """Raise an OrchError naming the first failing host, or return self."""
        for host, msg in self.unreachable.items():
            raise OrchError(f"{host} is unreachable: {msg}", hint="run `orch doctor`", exit_code=ExitCode.UNREACHABLE)
        for host, msg in self.failed.items():
            raise OrchError(f"{host}: {msg}")
        if self.status != "successful" or self.rc != 0:
            raise OrchError(f"the playbook ended with status {self.status} (rc {self.rc})", hint="run `orch doctor`")
        return self

    def results(self, host: str, key: str) -> list[Any]:
        """Every `res[key]` returned on `host` (e.g. the `job` an orch_job task returned)."""
        return [res[key] for res in self.ok.get(host, []) if key in res]


# --- orch doctor ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    warning: bool = False  # ok, but the user should know (a host that cannot hold --mem caps)
