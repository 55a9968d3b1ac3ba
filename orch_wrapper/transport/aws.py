"""boto3 for orch's own AWS calls (the fleet key, doctor's checks, the sandbox): region, endpoint and credentials
come from Settings, passed explicitly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..config import Settings
from ..errors import ExitCode, OrchError, no_credentials


def session(settings: Settings) -> Any:
    """A fresh session: boto3's default one caches the first credentials it found for the process's life."""
    import boto3  # ~0.3 s of imports: paid only by the paths that call AWS themselves

    env = settings.aws_env
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        # Keys win over a profile, as they do in the environment.
        return boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            region_name=settings.region,
        )
    return boto3.session.Session(profile_name=env.get("AWS_PROFILE"), region_name=settings.region)


def client(settings: Settings, service: str) -> Any:
    return session(settings).client(service, region_name=settings.region, endpoint_url=settings.endpoint)


def known_regions(service: str = "ec2") -> set[str]:
    """Every region boto3 knows for SERVICE, in every partition: no credentials involved."""
    import boto3

    regions = set(boto3.session.Session().get_available_regions(service))
    for partition in ("aws-cn", "aws-us-gov"):
        regions |= set(boto3.session.Session().get_available_regions(service, partition_name=partition))
    return regions


@contextlib.contextmanager
def answering(what: str) -> Iterator[None]:
    """botocore's failures while reading WHAT, as one-line OrchErrors that say what to do."""
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise no_credentials() from None
    except botocore.exceptions.EndpointConnectionError:
        raise OrchError(
            "cannot reach the AWS endpoint",
            hint="check AWS_ENDPOINT_URL and the network",
            exit_code=ExitCode.UNREACHABLE,
        ) from None
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise OrchError(f"AWS refused to give {what}: {code}", hint="check the credentials' IAM permissions") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise OrchError(f"cannot read {what}: {exc}", hint="run `orch doctor`") from None
