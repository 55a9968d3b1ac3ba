#!/usr/bin/env python3
"""Remove orch job log directories whose newest file is older than a number of days.

Usage: orch-log-retention --days N LOGS_DIR

A job directory (LOGS_DIR/NAME) goes when every file in it is older than N days, unless its job.json says the job
is still RUNNING or QUEUED on this boot and its process lives. Prints one line per removed directory.
"""

import argparse
import json
import os
import shutil
import sys
import time

LIVE_STATES = {"RUNNING", "QUEUED"}


def newest_mtime(path: str) -> float:
    newest = os.lstat(path).st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def still_running(path: str) -> bool:
    try:
        with open(os.path.join(path, "job.json"), encoding="utf-8") as handle:
            job = json.load(handle)
    except (OSError, ValueError):
        return False
    if not isinstance(job, dict) or job.get("state") not in LIVE_STATES:
        return False
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            if job.get("boot_id") and job["boot_id"] != handle.read().strip():
                return False
    except OSError:
        pass
    pid = job.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True  # no evidence either way: keep it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"--days must be a positive integer, not {text!r}")
    return int(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=positive_int, required=True)
    parser.add_argument("logs_dir")
    args = parser.parse_args()
    if not os.path.isdir(args.logs_dir):
        return 0
    cutoff = time.time() - args.days * 86400
    for entry in sorted(os.scandir(args.logs_dir), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False):
            continue
        if newest_mtime(entry.path) >= cutoff or still_running(entry.path):
            continue
        shutil.rmtree(entry.path)
        print(f"removed {entry.path} (no file newer than {args.days} days)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
