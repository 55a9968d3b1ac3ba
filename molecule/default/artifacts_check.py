"""Run the repos part of configure.yml through ansible-runner, as `orch configure` does, and prove that no deploy-key
material reaches the runner's artifacts or its output.

Usage: python3 artifacts_check.py PROJECT_DIR INVENTORY  (the keys to look for arrive on stdin, never from a file)

Prints JSON: the run's status, how many files were scanned, and where key material was found (expected: nowhere).
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import ansible_runner


def main() -> int:
    project, inventory = Path(sys.argv[1]), sys.argv[2]
    needles = {"PRIVATE KEY-----"}
    for line in sys.stdin.read().splitlines():
        line = line.strip()
        if len(line) >= 16 and "PRIVATE KEY" not in line:
            needles.add(line)
    with tempfile.TemporaryDirectory(prefix="orch-molecule-runner-") as tmp:
        result = ansible_runner.run(
            private_data_dir=tmp,
            playbook=str(project / "playbooks" / "configure.yml"),
            inventory=inventory,
            tags="orch_repos",
            quiet=True,
        )
        hits, scanned = [], 0
        output = result.stdout.read()
        if any(needle in output for needle in needles):
            hits.append("<stdout>")
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                path = Path(root, name)
                scanned += 1
                text = path.read_bytes().decode("utf-8", errors="replace")
                if any(needle in text for needle in needles):
                    hits.append(str(path.relative_to(tmp)))
    print(json.dumps({"status": result.status, "rc": result.rc, "scanned": scanned, "hits": hits}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
