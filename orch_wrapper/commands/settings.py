"""`orch config`: every setting as orch resolved it, and where each value came from (orch's default, the config
file and its line, the running sandbox, or an environment variable). Local only: no network."""

from __future__ import annotations

import json
import sys

from .. import ui
from ..config import Settings
from ..config_file import KEYS
from ..errors import ExitCode

# what an unset setting means, said beside it
UNSET = {
    "profile": "boto3's own chain: AWS_ACCESS_KEY_ID, the default profile, an instance role",
    "mem": "`orch run` without --mem reserves 1G, capped by orch.slice alone",
    "notify": "no job-end webhook unless --notify or the fleet's orch_notify_parameter names one",
    "plan": "`orch cost` uses the price table's plan (on-demand unless prices.json says)",
}


def _values(settings: Settings) -> dict[str, str | None]:
    return {
        "home": str(settings.home),
        "fleet": settings.fleet,
        "region": settings.region,
        "profile": settings.aws_env.get("AWS_PROFILE"),
        "endpoint": settings.endpoint,
        "mem": settings.mem,
        "notify": settings.notify,
        "plan": settings.plan,
    }


def config(settings: Settings, *, as_json: bool) -> int:
    values = _values(settings)
    exists = settings.config_file is not None and settings.config_file.exists()
    if as_json:
        out = {k: {"value": v, "source": settings.sources.get(k, "default")} for k, v in values.items()}
        json.dump({"config_file": str(settings.config_file), "exists": exists, "settings": out}, sys.stdout, indent=2)
        print()
        return ExitCode.OK
    rows = []
    for key, value in values.items():
        source = settings.sources.get(key, "default")
        if value is None and key in UNSET:
            source = f"{source}: {UNSET[key]}"
        rows.append([key, "-" if value is None else value, source])
    sys.stdout.write(ui.columns(["SETTING", "VALUE", "SOURCE"], rows))
    state = "" if exists else " (absent: every setting from the environment or orch's defaults)"
    print(f"config file: {settings.config_file}{state}; its keys: {', '.join(KEYS)}")
    return ExitCode.OK
