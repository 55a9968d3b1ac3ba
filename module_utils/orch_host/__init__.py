"""orch_host: the host side of a job (stdlib only), imported by the laptop and sent to the hosts."""
