"""How orch reaches the fleet, below the verbs: ansible-runner and the environment of Ansible's processes, the
dynamic inventory, ssh, orch's ssh-agent, boto3. Imports model, config and errors only; never commands or ui."""
