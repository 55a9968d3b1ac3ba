#!/usr/bin/python
# Copyright: orch contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: orch_ssh_keypair
short_description: Keep a fleet's SSH key pair in SSM Parameter Store, generated in memory
description:
  - When the SSM parameter O(parameter) is absent, generates an ed25519 key pair in memory, stores the private key
    (OpenSSH format) as a C(SecureString) parameter and returns the public key.
  - When the parameter exists, returns the public key derived from the stored private key and changes nothing.
  - The private key is never written to disk and never returned; register the public key with EC2 afterwards
    (M(amazon.aws.ec2_key)).
  - Connection settings (credentials, region, endpoint) are the standard ones of the amazon.aws modules, so the
    environment (C(AWS_PROFILE), C(AWS_REGION), C(AWS_ENDPOINT_URL)) drives it.
options:
  parameter:
    description: Name of the SSM parameter holding the private key, for example C(/orch/orch/ssh/private-key).
    type: str
    required: true
  comment:
    description: Comment appended to the public key.
    type: str
    default: orch
  kms_key_id:
    description: KMS key for the SecureString; the account's default C(alias/aws/ssm) key when omitted.
    type: str
attributes:
  check_mode:
    support: full
    description: In check mode nothing is stored; RV(public_key) is empty when a key would be generated.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
author:
  - orch contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Ensure the fleet's SSH key pair exists in SSM Parameter Store
  orch_ssh_keypair:
    parameter: /orch/orch/ssh/private-key
    comment: orch-orch
  register: orch_keypair

- name: Ensure the EC2 key pair holds the public key
  amazon.aws.ec2_key:
    name: orch-orch
    key_material: "{{ orch_keypair.public_key }}"
"""

RETURN = r"""
public_key:
  description: The public key in OpenSSH format (empty in check mode when a key would be generated).
  returned: always
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... orch-orch
parameter:
  description: Name of the SSM parameter holding the private key.
  returned: always
  type: str
  sample: /orch/orch/ssh/private-key
generated:
  description: Whether a new key pair was generated (and stored) by this run.
  returned: always
  type: bool
"""

try:
    import botocore
except ImportError:
    pass  # AnsibleAWSModule reports the missing SDK

try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False
    UnsupportedAlgorithm = ValueError

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def public_key_of(private_key, comment):
    """The OpenSSH public key line for a private key object."""
    raw = private_key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{raw.decode()} {comment}" if comment else raw.decode()


def generate():
    """A new ed25519 private key: the object and its OpenSSH PEM text."""
    key = ed25519.Ed25519PrivateKey.generate()
    text = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    return key, text


def read_parameter(module, ssm, name):
    """The stored private key text, or None when the parameter does not exist."""
    try:
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except is_boto3_error_code("ParameterNotFound"):
        return None
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg=f"Failed to read SSM parameter {name}")


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            parameter=dict(type="str", required=True),
            comment=dict(type="str", default="orch"),
            kms_key_id=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg="The cryptography package is required (ansible-core ships it): pip install cryptography")

    name = module.params["parameter"]
    comment = module.params["comment"]
    ssm = module.client("ssm")
    result = dict(changed=False, parameter=name, generated=False, public_key="")

    stored = read_parameter(module, ssm, name)
    if stored is not None:
        try:
            key = serialization.load_ssh_private_key(stored.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            module.fail_json(
                msg=f"SSM parameter {name} holds no unencrypted OpenSSH private key: delete it to generate a new one",
                **result,
            )
        result["public_key"] = public_key_of(key, comment)
        module.exit_json(**result)

    result.update(changed=True, generated=True)
    if module.check_mode:
        module.exit_json(**result)

    key, text = generate()
    put = dict(
        Name=name,
        Value=text,
        Type="SecureString",
        Overwrite=False,
        Description="orch fleet SSH private key (ed25519, OpenSSH format)",
    )
    if module.params["kms_key_id"]:
        put["KeyId"] = module.params["kms_key_id"]
    try:
        ssm.put_parameter(**put)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
        module.fail_json_aws(e, msg=f"Failed to store the private key in SSM parameter {name}")
    finally:
        del text, put  # keep the private key's text no longer than needed
    result["public_key"] = public_key_of(key, comment)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
