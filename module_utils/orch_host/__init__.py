"""orch's host side: stdlib-only code that runs on each job host, one concern per module.

- contract: what the laptop and the host agree on (names, states, exit codes, sizes, SSM paths); the laptop
  imports it instead of restating it
- records: the host layout (~/logs/NAME/{run.log,job.json}, ~/.orch) and job records read with live evidence
- memory: cgroups and /proc: caps, current and peak memory, OOM counters
- supervisor: runs one job inside its tmux session and writes its record
- follow: streams a job's log until the job ends
- control: start, stop and remove (the Ansible module's actions)
- bundle: ships this package to the host (content hash, install under ~/.orch/lib, the read paths' bootstrap)
- script: the command line of the host (query, follow, supervise)

Room for what comes next: queue (memory admission) and idle (the idle agent) sit beside these.
Shipped by Ansible as module_utils (ansible.module_utils.orch_host) and by the CLI's read paths (orch_host).
"""
