"""The `orch` command: argparse parsers only; each verb hands its typed values to one keyword-only function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from . import config, timings
from .errors import ExitCode, OrchError


class _Parser(argparse.ArgumentParser):
    """argparse that raises OrchError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise OrchError(message, hint=f"see `{self.prog} --help`", exit_code=ExitCode.USAGE)


def version() -> str:
    from . import __version__

    return __version__


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: object):
        # default=SUPPRESS: no `version` key in the values handed to the verb
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print orch's version")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"orch {version()}")
        parser.exit()


# Each verb module is imported when its verb runs, so a call of orch loads only its own verb's code (people repeat
# `orch status`: it should start fast).
def _doctor() -> ModuleType:
    from .commands import doctor

    return doctor


def _fleet() -> ModuleType:
    from .commands import fleet

    return fleet


def _jobs() -> ModuleType:
    from .commands import jobs

    return jobs


def _cost() -> ModuleType:
    from .commands import cost

    return cost


def _power() -> ModuleType:
    from .commands import power

    return power


def _read() -> ModuleType:
    from .commands import read

    return read


def _settings() -> ModuleType:
    from .commands import settings

    return settings


def _pull() -> ModuleType:
    from .commands import pull

    return pull


def _sandbox() -> ModuleType:
    from .commands import sandbox

    return sandbox


def _verb(module: Callable[[], ModuleType], name: str) -> Callable[..., int]:
    """The verb function NAME of the module that MODULE imports, looked up when the verb runs."""

    def verb(settings: config.Settings, **values: object) -> int:
        func = getattr(module(), name)
        timings.mark("the verb's imports")
        return func(settings, **values)

    verb.__qualname__ = f"{module.__name__.lstrip('_')}.{name}"
    return verb


def _names(action: argparse.Action, kind: str) -> argparse.Action:
    """Mark ACTION as taking job or host names: the completion script completes them from orch's local caches
    (commands/completion.py; shtab reads `.complete`)."""
    action.complete = {"bash": f"_orch_{kind}", "zsh": f"_orch_{kind}"}  # type: ignore[attr-defined]
    return action


def _completion(settings: config.Settings, *, shell: str) -> int:
    from .commands import completion

    sys.stdout.write(completion.script(build_parser(), shell))
    return ExitCode.OK


def _minutes(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 10080:
        raise argparse.ArgumentTypeError(f"expected whole minutes from 1 to 10080 (a week), got {value!r}")
    return int(value)


def _non_negative(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="orch",
        description="Run heavy jobs on EC2 hosts in tmux, from a light laptop.",
        epilog="Settings: ORCH_HOME (default ~/.orch), ORCH_CONFIG (default ORCH_HOME/config.toml), ORCH_FLEET "
        "(default orch), AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ORCH_MEM, ORCH_NOTIFY, ORCH_PLAN; "
        "`orch config` shows them.",
    )
    parser.add_argument("--version", action=_VersionAction)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    p = verbs.add_parser("hosts", help="list the fleet's hosts")
    p.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    p.add_argument("--refresh", action="store_true", help="re-read the inventory instead of orch's 5-minute cache")
    p.set_defaults(func=_verb(_fleet, "hosts"))

    p = verbs.add_parser("doctor", help="check credentials, endpoint, inventory, ssh to each host, local tools")
    p.set_defaults(func=_verb(_doctor, "doctor"))

    p = verbs.add_parser("configure", help="apply the host roles (playbooks/configure.yml) to the fleet")
    _names(p.add_argument("--host", help="only this host"), "hosts")
    p.set_defaults(func=_verb(_fleet, "configure"))

    p = verbs.add_parser("up", help="start the fleet's stopped instances (EC2) and wait until ssh answers")
    _names(p.add_argument("hosts", metavar="HOST", nargs="*", help="only these hosts (default: all)"), "hosts")
    p.set_defaults(func=_verb(_power, "up"))

    p = verbs.add_parser("down", help="stop the fleet's instances (EC2 stop, never terminate): their disks stay")
    _names(p.add_argument("hosts", metavar="HOST", nargs="*", help="only these hosts (default: all)"), "hosts")
    p.add_argument(
        "--force",
        action="store_true",
        help="stop even while jobs are RUNNING or QUEUED there (they end with the host: LOST), or unseen",
    )
    p.set_defaults(func=_verb(_power, "down"))

    p = verbs.add_parser("autostop", help="show or change each host's idle auto-stop (the host stops itself)")
    _names(p.add_argument("hosts", metavar="HOST", nargs="*", help="only these hosts (default: all running)"), "hosts")
    p.add_argument("--idle", type=_minutes, metavar="MINUTES", help="stop after this many idle minutes (1 to 10080)")
    p.add_argument(
        "--mode",
        choices=["jobs_and_sessions", "jobs", "off"],
        help="what keeps a host up: jobs, tmux clients, logins and keep-alives (default), or jobs and keep-alives",
    )
    p.add_argument("--off", action="store_true", help="never stop by itself (same as --mode off)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    p.set_defaults(func=_verb(_power, "autostop"))

    p = verbs.add_parser("keepalive", help="keep hosts up for work orch did not start, e.g. --for 2h (0 ends it)")
    _names(p.add_argument("hosts", metavar="HOST", nargs="+", help="the hosts to keep up"), "hosts")
    p.add_argument("--for", dest="duration", required=True, metavar="DURATION", help="e.g. 90s, 45m, 2h, 1h30m; 0 ends")
    p.set_defaults(func=_verb(_power, "keepalive"))

    p = verbs.add_parser(
        "cost", help="what the fleet cost in a month, an estimate (hours from the hosts' power record)"
    )
    p.add_argument("--month", metavar="YYYY-MM", help="the month (default: this one, so far)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    p.set_defaults(func=_verb(_cost, "cost"))

    p = verbs.add_parser("run", help="start a job in its own tmux session on a host")
    p.add_argument("name", metavar="NAME", help="job name: a-z 0-9 . _ -, up to 63")
    p.add_argument("command", metavar="CMD", help="the command line, run by bash on the host")
    _names(p.add_argument("--host", help="the host to run on (default: the least busy)"), "hosts")
    p.add_argument(
        "--cwd", help="working directory on the host (default ~/work, or the repo with --repo; relative = under ~/work)"
    )
    p.add_argument(
        "--repo",
        metavar="REPO[@REF]",
        help="first bring ~/work/REPO (a repo of the fleet's list) to REF, a branch, tag or commit (default: its "
        "configured branch); the job records the commit. A clone with local changes is refused, never reset",
    )
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable (repeatable)")
    p.add_argument(
        "--secret",
        dest="secrets",
        action="append",
        default=[],
        metavar="VAR=/ssm/param",
        help="environment variable fetched on the host from SSM Parameter Store (repeatable)",
    )
    p.add_argument(
        "--mem",
        metavar="SIZE",
        help="the job's memory cap and reservation, e.g. 8G or 512M (whole numbers, 16M to 64T). A job whose "
        "reservation does not fit beside the running jobs' waits QUEUED. Without --mem the job reserves 1G and is "
        "bounded only by orch.slice, the host's memory less its reserve (default: ORCH_MEM, the config file's mem)",
    )
    p.add_argument(
        "--notify",
        metavar="PARAM",
        help="when the job ends, the host posts it to the webhook URL this SSM parameter holds (default: ORCH_NOTIFY, "
        "the config file's notify, else the fleet's orch_notify_parameter)",
    )
    p.add_argument(
        "--no-tty",
        dest="tty",
        action="store_false",
        help="batch mode: no terminal, output straight into the log (for jobs that print gigabytes)",
    )
    p.add_argument(
        "--no-queue",
        dest="queue",
        action="store_false",
        help="refuse the job, with the figures, when its reservation does not fit now, rather than queue it",
    )
    p.set_defaults(func=_verb(_jobs, "run"))

    p = verbs.add_parser("status", help="jobs across the fleet")
    _names(p.add_argument("name", metavar="NAME", nargs="?", help="only this job"), "jobs")
    p.add_argument(
        "--all", dest="show_all", action="store_true", help="every job kept on the hosts, not just active and last 24 h"
    )
    p.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    p.set_defaults(func=_verb(_read, "status"))

    p = verbs.add_parser("logs", help="print or follow a job's log")
    _names(p.add_argument("name", metavar="NAME"), "jobs")
    p.add_argument("-f", "--follow", action="store_true", help="stream until the job ends; exit with its exit code")
    p.add_argument("-n", "--tail", type=_non_negative, metavar="N", help="only the last N lines")
    p.add_argument(
        "--plain", action="store_true", help="text only: terminal escapes dropped, progress redraws (\\r) at their end"
    )
    p.set_defaults(func=_verb(_read, "logs"))

    p = verbs.add_parser("wait", help="block until jobs end; exit with the job's code (several: the first failure's)")
    _names(p.add_argument("names", metavar="NAME", nargs="+", help="the jobs to wait for"), "jobs")
    p.add_argument("--timeout", metavar="DURATION", help="give up after this long (e.g. 30m, 2h): exit 124")
    p.set_defaults(func=_verb(_read, "wait"))

    p = verbs.add_parser("pull", help="copy a job's results back with rsync (only what changed since the last pull)")
    _names(p.add_argument("name", metavar="NAME"), "jobs")
    p.add_argument("paths", metavar="PATH", nargs="*", help="relative to the job's cwd (default: its log folder)")
    p.add_argument("--to", metavar="DIR", help="where to put them (default: ./NAME/)")
    p.add_argument("--absolute", action="store_true", help="allow absolute PATHs outside the job's cwd")
    p.set_defaults(func=_verb(_pull, "pull"))

    p = verbs.add_parser("attach", help="attach to a job's tmux session (ssh -t)")
    _names(p.add_argument("name", metavar="NAME"), "jobs")
    p.add_argument("-r", "--read-only", action="store_true", help="attach read-only")
    p.set_defaults(func=_verb(_read, "attach"))

    p = verbs.add_parser("stop", help="stop a job (SIGTERM, then SIGKILL after a grace period)")
    _names(p.add_argument("name", metavar="NAME"), "jobs")
    p.add_argument("--grace", type=_non_negative, metavar="SECONDS", help="seconds between SIGTERM and SIGKILL")
    p.set_defaults(func=_verb(_jobs, "stop"))

    p = verbs.add_parser("rm", help="forget a finished job")
    _names(p.add_argument("name", metavar="NAME"), "jobs")
    p.add_argument("--purge", action="store_true", help="also delete its logs")
    p.set_defaults(func=_verb(_jobs, "rm"))

    p = verbs.add_parser("config", help="each setting orch uses and where it came from (file, environment, default)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    p.set_defaults(func=_verb(_settings, "config"))

    p = verbs.add_parser("completion", help='print the shell completion script: eval "$(orch completion bash)"')
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=_completion)

    p = verbs.add_parser("ssh-config", help="print Host blocks for ~/.ssh/config so plain `ssh HOST` works")
    p.set_defaults(func=_verb(_read, "ssh_config"))

    p = verbs.add_parser("sandbox", help="the local sandbox fleet: moto as AWS, podman containers as hosts")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--hosts", type=int, default=1, metavar="N", help="how many hosts `up` provisions (default 1)")
    p.add_argument(
        "--memory",
        metavar="SIZE[,SIZE...]",
        help="each host container's memory limit, one size for all or one per host (e.g. 3G or 3G,4G,6G); "
        "default none (the machine's memory)",
    )
    p.set_defaults(func=_verb(_sandbox, "sandbox"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    timings.start()
    try:
        return _main(argv)
    finally:
        timings.write()


def _main(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["__complete"]:  # the completion script, on every TAB: local caches only, quiet on any error
        return _complete_names(argv[1:])
    parser = build_parser()
    try:
        values = vars(parser.parse_args(argv))
        values.pop("verb")
        func = values.pop("func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return ExitCode.USAGE
        # Settings are built here, once (from the environment and a running sandbox's env.json), and handed down;
        # the other values are the verb's keyword arguments.
        settings = config.load()
        timings.mark("arguments and settings")
        return int(func(settings, **values))
    except OrchError as exc:
        print(f"orch: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else ExitCode.OK
    except KeyboardInterrupt:
        print("orch: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # `orch status | head`
        return ExitCode.OK


def _complete_names(args: list[str]) -> int:
    from .commands import completion

    try:
        return completion.names(config.load(), args[0] if args else "")
    except OrchError:
        return ExitCode.CONFIG


if __name__ == "__main__":
    sys.exit(main())
