"""The instance's metadata: EC2's instance metadata service (IMDSv2: a session token first), or a folder holding its
paths as files (the sandbox's hosts, which have no IMDS: the orch_autostop role writes the folder, and a test may
write into it, such as a spot interruption notice)."""

import os

IMDS = "imds"
IMDS_HOST = "169.254.169.254"


def _imds(path):
    import http.client  # stdlib: the host package needs nothing else

    def ask(method, where, headers):
        conn = http.client.HTTPConnection(IMDS_HOST, timeout=5)
        try:
            conn.request(method, f"/latest/{where}", headers=headers)
            reply = conn.getresponse()
            return reply.status, reply.read().decode().strip()
        finally:
            conn.close()

    status, token = ask("PUT", "api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    if status != 200:
        raise OSError(f"instance metadata token: HTTP {status}")
    status, body = ask("GET", path, {"X-aws-ec2-metadata-token": token})
    if status == 404:
        return None
    if status != 200:
        raise OSError(f"instance metadata {path}: HTTP {status}")
    return body


def read(source, path):
    """The text at PATH (like "meta-data/instance-id") of SOURCE ("imds" or a folder); None where it has none (IMDS's
    404: e.g. no spot interruption notice). An OSError when the source cannot answer."""
    if source == IMDS:
        return _imds(path)
    try:
        with open(os.path.join(source, path)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def identity(source):
    """(instance id, region) from SOURCE; an OSError when either is missing."""
    found = [read(source, path) for path in ("meta-data/instance-id", "meta-data/placement/region")]
    if None in found or "" in found:
        raise OSError(f"instance metadata from {source}: no instance id or region")
    return found[0], found[1]
