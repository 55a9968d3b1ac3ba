"""Run library/orch_job.py as Ansible runs a module from an args file: `python3 run_module.py MODULE ARGS_FILE`.

Ansible ships module_utils inside its payload as ansible.module_utils.*; here the project's module_utils folder
joins that package's path instead, so the module file runs unchanged.
"""

import runpy
import sys
from pathlib import Path

import ansible.module_utils

ansible.module_utils.__path__.append(str(Path(__file__).resolve().parents[2] / "module_utils"))
module, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(module, run_name="__main__")
