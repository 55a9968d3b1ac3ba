"""Summary of an `ansible-test sanity --junit` run for scripts/sanity: each test passed, failed or had nothing to
check, and every finding under the project's own paths (library/, module_utils/) instead of the collection's.

usage: sanity_summary.py JUNIT_DIR EXIT_CODE  (exits with ansible-test's exit code, or 1 when a test failed)
"""

import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

PATHS = (("plugins/modules/", "library/"), ("plugins/module_utils/", "module_utils/"))


def project_path(line):
    for collection, project in PATHS:
        if line.startswith(collection):
            return project + line[len(collection) :]
    return line


def results(junit_dir):
    """[(test, "pass" | "FAIL" | "n/a", [details])] from ansible-test's junit files, one per test (and Python)."""
    found = []
    for path in sorted(glob.glob(os.path.join(junit_dir, "ansible-test-sanity-*.xml"))):
        for case in ET.parse(path).getroot().iter("testcase"):
            # multi-version tests are named after the Python as well: compile-python-3.11
            name = re.sub(r"-python-\d+\.\d+$", "", case.get("name", ""))
            failures = case.findall("failure") + case.findall("error")
            skipped = case.find("skipped")
            if failures:
                lines = [ln for f in failures for ln in (f.text or f.get("message", "")).splitlines() if ln.strip()]
                found.append((name, "FAIL", [project_path(ln) for ln in lines]))
            elif skipped is not None:
                found.append((name, "n/a", [skipped.text or skipped.get("message", "skipped")]))
            else:
                found.append((name, "pass", []))
    return found


def main(argv):
    junit_dir, rc = argv[1], int(argv[2])
    found = results(junit_dir)
    print("\n==> ansible-test sanity: results")
    for name, verdict, details in found:
        if verdict == "n/a":
            print(f"  n/a   {name} ({details[0]})")
            continue
        print(f"  {verdict:<5} {name}")
        for line in details:
            print(f"          {line}")
    failed = [name for name, verdict, _details in found if verdict == "FAIL"]
    idle = [name for name, verdict, _details in found if verdict == "n/a"]
    if not found:
        print(f"ansible-test sanity stopped before any test result (exit {rc}); see its output above")
        return rc or 1
    if failed:
        print(f"ansible-test sanity: {len(failed)} of {len(found)} tests FAILED: {', '.join(failed)}")
        return rc or 1
    if rc != 0:
        print(f"ansible-test sanity exited {rc} with no failed test; see its output above")
        return rc
    note = f" ({len(idle)} had nothing to check here: {', '.join(idle)})" if idle else ""
    print(f"ansible-test sanity: all {len(found)} tests passed{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
