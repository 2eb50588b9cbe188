"""boto3 against the coordinator's SSM-compatible API (run by tests/tests/e2e/ssm_http.rs).

Arguments: INSTANCE_ID... (registered, online agents). Environment: SSM_ENDPOINT,
AWS_CA_BUNDLE and the issued key in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
Exits non-zero on the first failed check, printing what was expected.
"""

import datetime
import json
import os
import sys
import time

import boto3
import botocore
import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpsession import URLLib3Session

ENDPOINT = os.environ["SSM_ENDPOINT"]
CA = os.environ["AWS_CA_BUNDLE"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
KEY = os.environ["AWS_ACCESS_KEY_ID"]
SECRET = os.environ["AWS_SECRET_ACCESS_KEY"]
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


def client(**kw):
    return boto3.client("ssm", endpoint_url=ENDPOINT, region_name=REGION, verify=CA, **kw)


def expect_error(code, call, status=400):
    try:
        call()
    except ClientError as e:
        got = e.response["Error"]["Code"]
        http = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert got == code and http == status, f"expected {code}/{status}, got {got}/{http}: {e}"
        return e.response["Error"].get("Message", "")
    raise AssertionError(f"expected {code}, the call succeeded")


def raw(target, body=b"{}", clock_offset=None, secret=SECRET):
    """A hand-signed request, for what boto3 will not send."""
    req = AWSRequest(
        method="POST",
        url=ENDPOINT + "/",
        data=body,
        headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
    )
    real = botocore.auth.get_current_datetime
    if clock_offset is not None:
        botocore.auth.get_current_datetime = lambda: real() + clock_offset
    try:
        SigV4Auth(Credentials(KEY, secret), "ssm", REGION).add_auth(req)
    finally:
        botocore.auth.get_current_datetime = real
    resp = URLLib3Session(verify=CA).send(req.prepare())
    return resp.status_code, resp.headers, json.loads(resp.content or b"{}")


class SignedOnly(SigV4Auth):
    """SigV4 over only the named headers (botocore signs every header it sends)."""

    def __init__(self, keep):
        super().__init__(Credentials(KEY, SECRET), "ssm", REGION)
        self.keep = keep

    def headers_to_sign(self, request):
        headers = super().headers_to_sign(request)
        for name in list(headers.keys()):
            if name.lower() not in self.keep:
                del headers[name]
        return headers


def signed_once(target, body=b"{}", keep=None):
    """A request signed once, to be sent as often as a test wants."""
    req = AWSRequest(
        method="POST",
        url=ENDPOINT + "/",
        data=body,
        headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
    )
    auth = SignedOnly(keep) if keep else SigV4Auth(Credentials(KEY, SECRET), "ssm", REGION)
    auth.add_auth(req)
    return req.prepare()


def send(prepared):
    resp = URLLib3Session(verify=CA).send(prepared)
    return resp.status_code, json.loads(resp.content or b"{}")


def sigv4_checks(instance_ids):
    """The operation and the body's type must be signed; a signed request that
    changes something is accepted once; reads may repeat."""
    for missing in ("x-amz-target", "content-type"):
        keep = {"host", "x-amz-date", "x-amz-target", "content-type"} - {missing}
        status, body = send(signed_once("AmazonSSM.ListCommands", keep=keep))
        assert status == 400 and body["__type"] == "IncompleteSignatureException", body
        assert f"SignedHeaders must include {missing}" in body["message"], body
    # Signed as DescribeDocument, sent as GetDocument: the signature no longer matches.
    doc = json.dumps({"Name": "AWS-RunShellScript"}).encode()
    req = signed_once("AmazonSSM.DescribeDocument", body=doc)
    status, body = send(req)
    assert status == 200 and body["Document"]["Name"] == "AWS-RunShellScript", body
    req.headers["X-Amz-Target"] = "AmazonSSM.GetDocument"
    status, body = send(req)
    assert status == 400 and body["__type"] == "InvalidSignatureException", body
    # The same signed SendCommand twice: one command.
    comment = f"replay-{time.time_ns()}"
    sent = json.dumps({
        "InstanceIds": instance_ids[:1], "DocumentName": "AWS-RunShellScript",
        "Comment": comment, "Parameters": {"commands": ["true"]},
    }).encode()
    req = signed_once("AmazonSSM.SendCommand", body=sent)
    status, body = send(req)
    assert status == 200 and body["Command"]["Comment"] == comment, body
    status, body = send(req)
    assert status == 400 and body["__type"] == "InvalidSignatureException", body
    assert "already used" in body["message"], body
    mine = [c for c in client(config=NO_RETRY).list_commands()["Commands"] if c["Comment"] == comment]
    assert len(mine) == 1, mine
    # Reads may repeat.
    req = signed_once("AmazonSSM.ListCommands")
    assert send(req)[0] == 200 and send(req)[0] == 200
    # A change that failed took no effect: sent again, it is answered again.
    bad = json.dumps({"InstanceIds": instance_ids[:1], "DocumentName": "NoSuchDocument"}).encode()
    req = signed_once("AmazonSSM.SendCommand", body=bad)
    for _ in range(2):
        status, body = send(req)
        assert status == 400 and body["__type"] == "InvalidDocument", body


def main(instance_ids):
    ssm = client(config=NO_RETRY)

    # describe-instance-information through the paginator (MaxResults min is 5).
    pages = ssm.get_paginator("describe_instance_information").paginate(
        PaginationConfig={"PageSize": 5}
    )
    seen = {i["InstanceId"]: i for p in pages for i in p["InstanceInformationList"]}
    for iid in instance_ids:
        assert seen[iid]["PingStatus"] == "Online", seen[iid]
        assert seen[iid]["ResourceType"] == "ManagedInstance", seen[iid]

    # send-command by IDs, the waiter, get-command-invocation.
    sent = ssm.send_command(
        InstanceIds=instance_ids,
        DocumentName="AWS-RunShellScript",
        Comment="from boto3",
        Parameters={"commands": ["echo boto3-$AWS_SSM_INSTANCE_ID"]},
    )["Command"]
    cid = sent["CommandId"]
    assert sent["TargetCount"] == len(instance_ids), sent
    assert isinstance(sent["RequestedDateTime"], datetime.datetime), sent
    for iid in instance_ids:
        ssm.get_waiter("command_executed").wait(
            CommandId=cid, InstanceId=iid, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        inv = ssm.get_command_invocation(CommandId=cid, InstanceId=iid)
        assert inv["Status"] == "Success", inv
        assert inv["StandardOutputContent"] == f"boto3-{iid}\n", inv

    # list-command-invocations with details.
    invs = ssm.list_command_invocations(CommandId=cid, Details=True)["CommandInvocations"]
    assert sorted(i["InstanceId"] for i in invs) == sorted(instance_ids), invs
    assert all(i["CommandPlugins"][0]["Output"].startswith("boto3-") for i in invs), invs

    # Pagination one command per page follows NextToken to the end.
    ssm.send_command(
        InstanceIds=instance_ids[:1],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"]},
    )
    pages = list(ssm.get_paginator("list_commands").paginate(PaginationConfig={"PageSize": 1}))
    ids = [c["CommandId"] for p in pages for c in p["Commands"]]
    assert len(pages) >= 2 and len(ids) == len(set(ids)) and cid in ids, pages

    # Documents, tags and tag targets, cancel-command: the same actions as the CLI's.
    names = [d["Name"] for d in ssm.list_documents()["DocumentIdentifiers"]]
    assert "AWS-RunShellScript" in names, names
    ssm.add_tags_to_resource(
        ResourceType="ManagedInstance", ResourceId=instance_ids[0], Tags=[{"Key": "Team", "Value": "blue"}]
    )
    tags = ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=instance_ids[0])["TagList"]
    assert {"Key": "Team", "Value": "blue"} in tags, tags
    tagged = ssm.send_command(
        Targets=[{"Key": "tag:Team", "Values": ["blue"]}],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["sleep 60"]},
    )["Command"]
    assert tagged["TargetCount"] == 1, tagged
    ssm.cancel_command(CommandId=tagged["CommandId"])
    for _ in range(120):
        inv = ssm.get_command_invocation(CommandId=tagged["CommandId"], InstanceId=instance_ids[0])
        if inv["Status"] not in ("Pending", "InProgress", "Delayed", "Cancelling"):
            break
        time.sleep(0.5)
    assert inv["Status"] == "Cancelled", inv

    # botocore checks minimums only; the coordinator checks the rest.
    msg = expect_error(
        "ValidationException",
        lambda: ssm.send_command(
            InstanceIds=instance_ids,
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
            TimeoutSeconds=2_592_001,
        ),
    )
    assert "'timeoutSeconds'" in msg and "less than or equal to 2592000" in msg, msg
    msg = expect_error(
        "ValidationException",
        lambda: ssm.send_command(
            InstanceIds=["not-an-instance"],
            DocumentName="AWS-RunShellScript",
            DocumentHashType="Md5",
        ),
    )
    assert msg.startswith("2 validation errors detected"), msg
    assert "'instanceIds.1.member'" in msg and "regular expression pattern" in msg, msg
    assert "enum value set: [Sha256, Sha1]" in msg, msg

    # Authentication refusals, with AWS's codes.
    unsigned = client(config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}))
    expect_error("MissingAuthenticationTokenException", unsigned.list_commands)
    wrong = boto3.client(
        "ssm", endpoint_url=ENDPOINT, region_name=REGION, verify=CA, config=NO_RETRY,
        aws_access_key_id=KEY, aws_secret_access_key=SECRET[:-1] + ("A" if SECRET[-1] != "A" else "B"),
    )
    expect_error("InvalidSignatureException", wrong.list_commands)
    unknown = boto3.client(
        "ssm", endpoint_url=ENDPOINT, region_name=REGION, verify=CA, config=NO_RETRY,
        aws_access_key_id="TKIAAAAAAAAAAAAAAAAA", aws_secret_access_key=SECRET,
    )
    expect_error("UnrecognizedClientException", unknown.list_commands)
    status, headers, body = raw("AmazonSSM.ListCommands", clock_offset=datetime.timedelta(minutes=-10))
    assert status == 400 and body["__type"] == "InvalidSignatureException", body
    assert "Signature expired" in body["message"], body
    assert headers["x-amzn-errortype"] == "InvalidSignatureException", headers
    status, _, body = raw("AmazonSSM.ListCommands", clock_offset=datetime.timedelta(minutes=3))
    assert status == 200 and "Commands" in body, body
    # A signed request may not mint keys: access-key operations are operator-only.
    status, _, body = raw("AmazonSSM.CreateAccessKey")
    assert status == 400 and body["__type"] == "UnknownOperationException", body
    status, _, body = raw("AmazonSSM.NoSuchOperation")
    assert status == 400 and body["__type"] == "UnknownOperationException", body
    status, _, body = raw("AmazonSSM.ListCommands", body=b"{not json")
    assert status == 400 and body["__type"] == "SerializationException", body
    sigv4_checks(instance_ids)
    print(json.dumps({"checked": "ok", "command": cid}))


if __name__ == "__main__":
    main(sys.argv[1:])
