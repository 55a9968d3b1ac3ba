"""Run on the molecule host as the job user: force log rotations while a writer keeps appending, then count lines.

Usage: python3 rotation_check.py LOGS_DIR LOGROTATE_CONFIG STATE_FILE ROTATIONS

The writer appends numbered lines through an O_APPEND descriptor, as a job's log writer does, until told to stop.
Each forced rotation happens while it writes. Prints JSON: rotations done, lines written, lines found in run.log and
its rotated files, the numbers missing and duplicated. Exit status 0 even on loss: the playbook asserts.
"""

import glob
import gzip
import json
import os
import subprocess
import sys
import time

WRITER = r"""
import os, sys, time
log, stop = sys.argv[1], sys.argv[2]
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
i = 0
while not os.path.exists(stop):
    os.write(fd, b"line %08d %s\n" % (i, b"x" * 60))
    i += 1
    if i % 200 == 0:
        time.sleep(0.001)
print(i)
"""


def size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def main() -> int:
    logs_dir, config, state, rotations = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    job = os.path.join(logs_dir, "rotation-check")
    os.makedirs(job, exist_ok=True)
    for old in glob.glob(os.path.join(job, "*")) + glob.glob(os.path.join(job, ".*")):
        os.unlink(old)
    log, stop = os.path.join(job, "run.log"), os.path.join(job, "stop")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, log, stop], stdout=subprocess.PIPE, text=True)
    done = 0
    for _ in range(rotations):
        while size(log) < 64 * 1024:  # the writer has appended since the last rotation
            time.sleep(0.01)
        subprocess.run(["/usr/sbin/logrotate", "-f", "--state", state, config], check=True)
        done += 1
    while size(log) < 8 * 1024:
        time.sleep(0.01)
    open(stop, "w").close()
    written = int(writer.communicate()[0])
    numbers = []
    for path in glob.glob(log + "*"):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as handle:
            numbers += [int(line.split()[1]) for line in handle if line.strip()]
    found = set(numbers)
    missing = sorted(set(range(written)) - found)
    result = {
        "rotations": done,
        "written": written,
        "found": len(numbers),
        "files": sorted(os.path.basename(p) for p in glob.glob(log + "*")),
        "missing": missing[:20],
        "missing_count": len(missing),
        "duplicates": len(numbers) - len(found),
        "paused_left": glob.glob(os.path.join(job, ".*paused")),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
