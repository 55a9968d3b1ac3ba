"""The host's command line: `query [NAME]`, `follow NAME [--tail N]`, `wait NAME... [--timeout SECONDS]`,
`supervise NAME SPEC`, and the idle
auto-stop's `autostop check | status | set [--mode MODE] [--idle MINUTES]`, `keepalive SECONDS`, the power
record's `power-log start | stop`, and the spot interruption watch's `spot check | watch`.

Exit statuses: `query` 0 (an unknown NAME gives "jobs": []); `follow` the job's own exit code (see
contract.EXIT_BY_STATE), 2 for an unknown job or an invalid name (one line on stderr), 130 when interrupted;
`wait` 0 once it has written its JSON lines (wait.py), 2 for an unknown job or an invalid name;
`supervise` 0, or 1 with one line on stderr; `autostop`, `keepalive`, `power-log` and `spot check` print JSON and
exit 0, or 1 with one line on stderr; `spot watch` looks for ever.
"""

import json
import os
import sys

from .contract import EXIT_UNKNOWN_JOB, JobError, check_name

USAGE = (
    "usage: query [NAME] | follow NAME [--tail N] | wait NAME... [--timeout SECONDS] | supervise NAME SPEC"
    " | autostop check|status|set [--mode MODE] [--idle MINUTES] | keepalive SECONDS | power-log start|stop"
    " | spot check|watch"
)


def whole(value, what):
    if not value.isdigit():
        raise JobError(f"{what} takes a whole number, not {value!r}")
    return int(value)


def _emit(answer):
    json.dump(answer, sys.stdout)
    sys.stdout.write("\n")


def power(argv):
    """`autostop ...`, `keepalive SECONDS`, `power-log ...` and `spot ...`: the instance's power (autostop.py,
    powerlog.py, spot.py)."""
    from . import autostop

    verb, words = argv[0], list(argv[1:])
    if verb == "spot" and words in (["check"], ["watch"]):
        from . import spot

        if words == ["watch"]:
            spot.watch()
        _emit(spot.check())
        return 0
    if verb == "power-log" and words in (["start"], ["stop"]):
        from .powerlog import record

        _emit(record(words[0], autostop.settings(), autostop.identity))
        return 0
    if verb == "keepalive" and len(words) == 1:
        _emit({"keepalive_until": autostop.keepalive(whole(words[0], "keepalive"))})
        return 0
    action = words.pop(0) if words else None
    if action == "check" and not words:
        _emit({"decided": autostop.check()})
        return 0
    if action == "set":
        mode = idle = None
        while len(words) >= 2 and words[0] in ("--mode", "--idle"):
            flag, value = words.pop(0), words.pop(0)
            if flag == "--mode":
                mode = value
            else:
                idle = whole(value, "--idle")
        if not words:
            autostop.change(mode, idle)
            action = "status"
    if action == "status" and not words:
        _emit(autostop.report())
        return 0
    raise JobError(USAGE)


def parse(argv):
    """(verb, name, tail, spec) from ARGV, or a JobError. By hand: argparse costs the query path more than it does.
    SPEC is the absolute path of the job's spec (supervise only; None otherwise). For wait, NAME is the list of
    names and TAIL its timeout."""
    verb, words, names = (argv[0] if argv else None), list(argv[1:]), []
    tail = None if verb == "wait" else 10  # follow's --tail; wait's --timeout (None: no timeout)
    while words:
        word = words.pop(0)
        if word == "--":  # the rest are names, whatever they look like
            names += words
            break
        if verb in ("follow", "wait") and word == ("--tail" if verb == "follow" else "--timeout") and words:
            tail = whole(words.pop(0), word)  # wait: its timeout in seconds
        else:
            names.append(word)
    if (verb == "query" and len(names) <= 1) or (verb == "follow" and len(names) == 1):
        return verb, (names[0] if names else None), tail, None
    if verb == "wait" and names:
        return verb, names, tail, None
    if verb == "supervise" and len(names) == 2 and os.path.isabs(names[1]):
        return verb, names[0], tail, names[1]
    raise JobError(USAGE)


def main(argv=None):
    verb = None
    try:
        argv = sys.argv[1:] if argv is None else argv
        if argv and argv[0] in ("autostop", "keepalive", "power-log", "spot"):
            verb = argv[0]
            return power(argv)
        verb, name, tail, spec = parse(argv)
        if verb == "wait":
            from .wait import wait

            for each in name:
                check_name(each)
            try:
                return wait(name, tail)
            except (BrokenPipeError, KeyboardInterrupt):  # the laptop went away: nothing to tell
                return 130
        if name is not None:
            check_name(name)
        if verb == "query":
            from .memory import host_memory
            from .records import query_jobs
            from .scope import helper_missing

            facts, jobs = query_jobs(name)
            reply = {"host": facts.host, "boot_id": facts.boot_id, "jobs": jobs}
            if name is None:  # the whole host: its memory and its auto-stop too (`orch hosts`, `orch status`)
                from .autostop import brief

                reply["memory"] = host_memory(jobs, helper_missing() or "enforced")
                reply["autostop"] = brief(facts)
            _emit(reply)
            return 0
        if verb == "follow":
            from .follow import follow

            try:
                return follow(name, tail)
            except BrokenPipeError:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
            except KeyboardInterrupt:
                return 130
        from .supervisor import supervise

        return supervise(name, spec)
    except JobError as exc:
        sys.stderr.write(f"orch: {exc}\n")
        return EXIT_UNKNOWN_JOB if verb in ("follow", "query", "wait", None) else 1
