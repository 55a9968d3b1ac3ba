"""How orch reaches the fleet: ansible-runner, ansible-inventory, ssh, orch's ssh-agent."""
