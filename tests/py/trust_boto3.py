"""boto3 with users' own access keys (run by tests/tests/e2e/trust.rs).

Arguments: LAB_INSTANCE PROD_INSTANCE. Environment: SSM_ENDPOINT,
AWS_CA_BUNDLE, ALICE_KEY/ALICE_SECRET (may send AWS-RunShellScript to
instances tagged Env=lab) and BOB_KEY/BOB_SECRET (read-only). Prints one
JSON line; exits non-zero on the first failed check, saying what was expected.
"""

import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["SSM_ENDPOINT"]
CA = os.environ["AWS_CA_BUNDLE"]
LAB, PROD = sys.argv[1], sys.argv[2]
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


def client(who):
    return boto3.client(
        "ssm",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        verify=CA,
        aws_access_key_id=os.environ[f"{who}_KEY"],
        aws_secret_access_key=os.environ[f"{who}_SECRET"],
        config=NO_RETRY,
    )


def refused(call, *needles):
    try:
        call()
    except ClientError as e:
        err = e.response["Error"]
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        if err["Code"] != "AccessDeniedException" or status != 400:
            sys.exit(f"expected AccessDeniedException/400, got {err['Code']}/{status}: {err}")
        for n in needles:
            if n not in err["Message"]:
                sys.exit(f"refusal does not name {n!r}: {err['Message']}")
        return err["Message"]
    sys.exit(f"expected AccessDeniedException naming {needles}, the call succeeded")


alice, bob = client("ALICE"), client("BOB")
before = len(bob.list_commands()["Commands"])

sent = alice.send_command(
    DocumentName="AWS-RunShellScript",
    InstanceIds=[LAB],
    Parameters={"commands": ["echo boto3-alice"]},
)
command_id = sent["Command"]["CommandId"]
# boto3 drops members its model does not have (Tether's RequestedBy).
if "RequestedBy" in sent["Command"]:
    sys.exit(f"boto3 kept an unknown member: {sent['Command']}")
for _ in range(200):
    inv = alice.get_command_invocation(CommandId=command_id, InstanceId=LAB)
    if inv["Status"] not in ("Pending", "InProgress", "Delayed"):
        break
    time.sleep(0.1)
if inv["Status"] != "Success" or inv["StandardOutputContent"] != "boto3-alice\n":
    sys.exit(f"alice's lab command did not run: {inv}")

mixed = refused(
    lambda: alice.send_command(
        DocumentName="AWS-RunShellScript",
        InstanceIds=[LAB, PROD],
        Parameters={"commands": ["echo never"]},
    ),
    "user/alice",
    "ssm:SendCommand",
    f"managed-instance/{PROD}",
)
refused(
    lambda: bob.send_command(
        DocumentName="AWS-RunShellScript",
        InstanceIds=[LAB],
        Parameters={"commands": ["echo never"]},
    ),
    "user/bob",
    "because no identity-based policy allows the ssm:SendCommand action",
)
after = len(bob.list_commands()["Commands"])
if after != before + 1:
    sys.exit(f"a refused send stored a command: {before} before, {after} after")
print(json.dumps({"checked": "ok", "refusal": mixed}))
