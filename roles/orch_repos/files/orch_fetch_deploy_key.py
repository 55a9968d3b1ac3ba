#!/usr/bin/env python3
"""Fetch one deploy key from SSM Parameter Store into a 0600 file, on the host, with the host's own credentials.

Usage: orch-fetch-deploy-key REPO PARAMETER DEST

Prints "changed" or "unchanged"; the key itself is never printed. On failure prints one line naming the repo
and exits 1, leaving any existing key file untouched.
"""

import os
import sys
import tempfile


def fail(repo: str, message: str) -> None:
    print(f"repo {repo}: {message}", file=sys.stderr)
    sys.exit(1)


def fetch(repo: str, parameter: str) -> str:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        fail(repo, "boto3 is not installed on the host (install python3-boto3)")
    try:
        # botocore before 1.31 (Debian 12's) ignores AWS_ENDPOINT_URL: pass it on explicitly (moto in the sandbox).
        endpoint = os.environ.get("AWS_ENDPOINT_URL_SSM") or os.environ.get("AWS_ENDPOINT_URL") or None
        ssm = boto3.client("ssm", endpoint_url=endpoint)
        response = ssm.get_parameter(Name=parameter, WithDecryption=True)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "Error")
        if code == "ParameterNotFound":
            fail(repo, f"SSM parameter {parameter} does not exist; store the deploy key there first")
        fail(repo, f"cannot read SSM parameter {parameter}: {code}")
    except BotoCoreError as exc:
        fail(repo, f"cannot reach SSM for parameter {parameter}: {type(exc).__name__}")
    value = response["Parameter"]["Value"]
    if "PRIVATE KEY-----" not in value:
        fail(repo, f"SSM parameter {parameter} does not hold an SSH private key")
    return value if value.endswith("\n") else value + "\n"


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    repo, parameter, dest = sys.argv[1:]
    key = fetch(repo, parameter)
    try:
        with open(dest, encoding="utf-8") as current:
            if current.read() == key and os.stat(dest).st_mode & 0o777 == 0o600:
                print("unchanged")
                return 0
    except FileNotFoundError:
        pass
    directory = os.path.dirname(dest)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".orch_deploy_")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        os.unlink(tmp)
        raise
    print("changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
