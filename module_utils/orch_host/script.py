"""The host's command line: `query [NAME]`, `follow NAME [--tail N]`, `supervise NAME`.

Exit statuses: `query` 0 (an unknown NAME gives "jobs": []); `follow` the job's own exit code (see
contract.EXIT_BY_STATE), 2 for an unknown job or an invalid name (one line on stderr), 130 when interrupted;
`supervise` 0, or 1 with one line on stderr.
"""

import json
import os
import sys

from .contract import EXIT_UNKNOWN_JOB, JobError, check_name


def parser():
    import argparse

    p = argparse.ArgumentParser(prog="orch_host", description="orch's host-side job tool")
    verbs = p.add_subparsers(dest="verb", required=True)
    query = verbs.add_parser("query", help="print the jobs as JSON")
    query.add_argument("name", nargs="?")
    follow = verbs.add_parser("follow", help="print the log's tail, stream it until the job ends, exit with its code")
    follow.add_argument("name")
    follow.add_argument("--tail", type=int, default=10)
    supervise = verbs.add_parser("supervise", help="run a job (inside its tmux session; started by the module)")
    supervise.add_argument("name")
    return p


def main(argv=None):
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.name is not None:
            check_name(args.name)
        if args.verb == "query":
            from .records import query_jobs

            facts, jobs = query_jobs(args.name)
            json.dump({"host": facts.host, "boot_id": facts.boot_id, "jobs": jobs}, sys.stdout)
            sys.stdout.write("\n")
            return 0
        if args.verb == "follow":
            from .follow import follow

            try:
                return follow(args.name, max(args.tail, 0))
            except BrokenPipeError:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
            except KeyboardInterrupt:
                return 130
        from .supervisor import supervise

        return supervise(args.name)
    except JobError as exc:
        sys.stderr.write(f"orch: {exc}\n")
        return EXIT_UNKNOWN_JOB if args.verb in ("follow", "query") else 1
