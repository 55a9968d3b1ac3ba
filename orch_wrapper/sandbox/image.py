"""The sandbox host image: Debian with systemd, sshd, python3 and tmux, built with debootstrap and cached by tag.

No image can be pulled from a registry on the machines orch is developed on, so the image is built from the apt
mirror that the machine's own apt sources name, imported into podman, and reused while its recipe is unchanged.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import OrchError
from . import podman

SUITE = "bookworm"
INIT = '["/sbin/init"]'  # exec form: systemd must be PID 1, not a child of sh -c
REPOSITORY = "localhost/orch-host"
# What an EC2 host has before orch's roles run, plus what they would install (so converging the sandbox does
# not download packages): libpam-systemd gives logind sessions, which lingering and KillUserProcesses act on.
PACKAGES = (
    "systemd systemd-sysv dbus libpam-systemd openssh-server openssh-client sudo ca-certificates procps iproute2 "
    "python3 python3-boto3 tmux git rsync logrotate less"
).split()

# Run inside the new root: an `ec2-user` with passwordless sudo as on Amazon Linux, sshd on loopback with keys
# only (each container sets its own port at creation), and no units that need a real machine.
SETUP_SCRIPT = r"""
set -e
useradd --create-home --uid 1000 --shell /bin/bash ec2-user
echo 'ec2-user ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-ec2-user
chmod 0440 /etc/sudoers.d/90-ec2-user
install -d -m 0700 -o ec2-user -g ec2-user /home/ec2-user/.ssh
cat > /etc/ssh/sshd_config.d/10-orch-sandbox.conf <<'CONF'
ListenAddress 127.0.0.1
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
CONF
systemctl enable ssh.service
systemctl mask getty@tty1.service console-getty.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


def recipe_tag() -> str:
    """The image tag: a hash of everything that shapes the image, so a changed recipe builds a new one."""
    digest = hashlib.sha256("\n".join([SUITE, INIT, *PACKAGES, SETUP_SCRIPT]).encode()).hexdigest()[:12]
    return f"{REPOSITORY}:{digest}"


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror that this machine's apt sources name (deb822 .sources files or sources.list)."""
    candidates: list[str] = []
    for path in sorted(sources_dir.glob("sources.list.d/*.sources")):
        for stanza in path.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                candidates.append(uris.group(1))
    for path in [sources_dir / "sources.list", *sorted(sources_dir.glob("sources.list.d/*.list"))]:
        if path.is_file():
            for m in re.finditer(rf"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+{SUITE}\s", path.read_text(), re.M):
                candidates.append(m.group(1))
    if not candidates:
        raise OrchError(f"no apt source for Debian {SUITE} in {sources_dir}", hint="add one, then retry")
    return candidates[0]


def exists(tag: str) -> bool:
    return podman.podman("image", "exists", tag, check=False).returncode == 0


def build(say=print) -> str:
    """Build the image unless its tag exists; return the tag."""
    tag = recipe_tag()
    if exists(tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise OrchError("debootstrap is not installed", hint="run scripts/install")
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="orch-image-") as tmp:
        root = Path(tmp) / "root"
        say(f"building sandbox host image {tag} with debootstrap (about 2 minutes)")
        run = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), mirror],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            tail = (run.stdout + run.stderr).strip().splitlines()[-3:]
            raise OrchError(f"debootstrap failed: {' | '.join(tail)}", hint="check the apt mirror and disk space")
        setup = subprocess.run(["chroot", str(root), "/bin/bash", "-c", SETUP_SCRIPT], capture_output=True, text=True)
        if setup.returncode != 0:
            raise OrchError(f"image setup failed: {setup.stderr.strip().splitlines()[-1:]}")
        say("importing the image into podman")
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["podman", "import", "--change", f"CMD {INIT}", "-", tag],
            stdin=tar.stdout,
            env=podman.env(),
            capture_output=True,
            text=True,
        )
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise OrchError(f"podman import failed: {imp.stderr.strip()}")
    return tag


def main(argv: list[str]) -> int:
    if argv[:1] == ["tag"]:
        print(recipe_tag())
        return 0
    if argv[:1] == ["build"]:
        try:
            print(build(say=lambda msg: print(msg, file=sys.stderr)))
        except OrchError as exc:
            print(f"orch: {exc}", file=sys.stderr)
            return 1
        return 0
    print("usage: python3 -m orch_wrapper.sandbox.image build|tag", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
