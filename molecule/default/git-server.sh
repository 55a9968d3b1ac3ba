#!/bin/bash
# Test bed on the molecule host (run once by prepare.yml, as root): a git server over the host's own sshd with two
# bare repositories, each reachable only with its own deploy key (a forced command per key, as a forge does),
# the two private keys stored in moto's SSM Parameter Store, and a login key for the job user.
# Usage: git-server.sh AWS_ENDPOINT_URL
set -euo pipefail
endpoint=$1
fixture=/var/lib/orch-molecule
rm -rf "$fixture"
install -d -m 0700 "$fixture"

id git >/dev/null 2>&1 || useradd --system --create-home --home-dir /srv/git --shell /bin/sh git
usermod -p '*' git # no password, but not a locked account: key logins only
install -d -m 0700 -o git -g git /srv/git/.ssh

cat >/usr/local/bin/orch-git-only <<'SH'
#!/bin/sh
# Forced command of one deploy key: git may read or push the one repository named on the key's line, nothing else.
case "$SSH_ORIGINAL_COMMAND" in
  "git-upload-pack '$1'" | "git-receive-pack '$1'") exec git-shell -c "$SSH_ORIGINAL_COMMAND" ;;
esac
echo "deploy key not valid for this repository" >&2
exit 1
SH
chmod 0755 /usr/local/bin/orch-git-only

: >/srv/git/.ssh/authorized_keys
for repo in alpha beta; do
  ssh-keygen -q -t ed25519 -N '' -C "deploy-$repo" -f "$fixture/$repo"
  echo "restrict,command=\"/usr/local/bin/orch-git-only /srv/git/$repo.git\" $(cat "$fixture/$repo.pub")" \
    >>/srv/git/.ssh/authorized_keys
  rm -rf "/srv/git/$repo.git"
  git init -q --bare -b main "/srv/git/$repo.git"
  work=$(mktemp -d)
  git -C "$work" init -q -b main
  echo "$repo on main" >"$work/README"
  git -C "$work" add README
  git -C "$work" -c user.name=molecule -c user.email=molecule@localhost commit -q -m "$repo: first"
  git -C "$work" branch release
  git -C "$work" checkout -q release
  echo "$repo on release" >"$work/RELEASE"
  git -C "$work" add RELEASE
  git -C "$work" -c user.name=molecule -c user.email=molecule@localhost commit -q -m "$repo: release"
  git -C "$work" push -q "/srv/git/$repo.git" main release
  rm -rf "$work"
done
chown -R git:git /srv/git
chmod 0600 /srv/git/.ssh/authorized_keys

# Login key for the job user: verify logs in over SSH as a person would.
ssh-keygen -q -t ed25519 -N '' -C login -f "$fixture/login"
cat "$fixture/login.pub" >>/home/ec2-user/.ssh/authorized_keys
chown ec2-user:ec2-user /home/ec2-user/.ssh/authorized_keys
chmod 0600 /home/ec2-user/.ssh/authorized_keys

# The deploy keys go to moto's SSM from here: they never pass through the controller.
AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
  python3 - "$fixture" <<'PY'
import os
import sys

import boto3

ssm = boto3.client("ssm", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for repo in ("alpha", "beta"):
    with open(f"{sys.argv[1]}/{repo}", encoding="ascii") as key:
        ssm.put_parameter(
            Name=f"/orch/molecule/deploy-keys/{repo}", Value=key.read(), Type="SecureString", Overwrite=True
        )
PY
touch "$fixture/.ready"
