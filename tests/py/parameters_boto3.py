"""Parameter Store through boto3 (run by tests/tests/e2e/parameters.rs).

Environment: SSM_ENDPOINT, AWS_CA_BUNDLE and the root's access key
(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). Versions, labels, selectors,
paths and recursion through boto3's paginators, and every error type the
issue names, each by its code. Exits non-zero on the first failed check,
saying what was expected.
"""

import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ssm = boto3.client(
    "ssm",
    endpoint_url=os.environ["SSM_ENDPOINT"],
    region_name="us-east-1",
    verify=os.environ["AWS_CA_BUNDLE"],
    config=Config(retries={"max_attempts": 1, "mode": "standard"}),
)


def check(cond, what):
    if not cond:
        sys.exit(f"boto3: expected {what}")


def error(code, call, **kw):
    try:
        call(**kw)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        check(got == code, f"{code}, got {got}: {e.response['Error']['Message']}")
        return e.response["Error"]["Message"]
    sys.exit(f"boto3: expected {code}, the call succeeded")


SECRET = "boto3-secure-value-Zq81"

check(ssm.put_parameter(Name="/b3/a/one", Value="1", Type="String")["Version"] == 1, "version 1")
error("ParameterAlreadyExists", ssm.put_parameter, Name="/b3/a/one", Value="x", Type="String")
check(
    ssm.put_parameter(Name="/b3/a/one", Value="2", Overwrite=True)["Version"] == 2,
    "version 2 on overwrite",
)
ssm.put_parameter(Name="/b3/a/list", Value="x,y", Type="StringList", Tags=[{"Key": "k", "Value": "v"}])
ssm.put_parameter(Name="/b3/a/deep/secret", Value=SECRET, Type="SecureString", KeyId="alias/aws/ssm")
for i in range(12):
    ssm.put_parameter(Name=f"/b3/many/p{i:02d}", Value=str(i), Type="String")

p = ssm.get_parameter(Name="/b3/a/one:1")["Parameter"]
check(p["Value"] == "1" and p["Selector"] == ":1", f"version 1 by selector, got {p}")
ssm.label_parameter_version(Name="/b3/a/one", ParameterVersion=1, Labels=["golden"])
check(ssm.get_parameter(Name="/b3/a/one:golden")["Parameter"]["Value"] == "1", "the label's value")
error("ParameterVersionNotFound", ssm.get_parameter, Name="/b3/a/one:5")
error("ParameterNotFound", ssm.get_parameter, Name="/b3/none")
error("ParameterNotFound", ssm.delete_parameter, Name="/b3/none")
error("HierarchyLevelLimitExceededException", ssm.put_parameter, Name="/x" * 16, Value="v", Type="String")
error(
    "ParameterPatternMismatchException",
    ssm.put_parameter,
    Name="/b3/pat",
    Value="abc",
    Type="String",
    AllowedPattern="^[0-9]+$",
)
error("InvalidKeyId", ssm.put_parameter, Name="/b3/k", Value="v", Type="SecureString", KeyId="alias/missing")
ssm.label_parameter_version(Name="/b3/a/one", ParameterVersion=2, Labels=[f"l{i}" for i in range(10)])
error(
    "ParameterVersionLabelLimitExceeded",
    ssm.label_parameter_version,
    Name="/b3/a/one",
    ParameterVersion=2,
    Labels=["extra"],
)

got = ssm.get_parameters(Names=["/b3/a/one", "/b3/a/deep/secret", "/b3/missing"], WithDecryption=True)
check(got["InvalidParameters"] == ["/b3/missing"], f"one invalid name, got {got['InvalidParameters']}")
values = {p["Name"]: p["Value"] for p in got["Parameters"]}
check(values.get("/b3/a/deep/secret") == SECRET, "the decrypted value")

# Paginators: twelve parameters in pages of at most ten.
pages = list(ssm.get_paginator("get_parameters_by_path").paginate(Path="/b3/many", PaginationConfig={"PageSize": 5}))
check(len(pages) == 3, f"3 pages of 5, got {len(pages)}")
names = [p["Name"] for page in pages for p in page["Parameters"]]
check(names == [f"/b3/many/p{i:02d}" for i in range(12)], f"every parameter once, in order: {names}")
flat = [p["Name"] for page in ssm.get_paginator("get_parameters_by_path").paginate(Path="/b3/a") for p in page["Parameters"]]
check(sorted(flat) == ["/b3/a/list", "/b3/a/one"], f"one level: {flat}")
rec = [
    p
    for page in ssm.get_paginator("get_parameters_by_path").paginate(Path="/b3", Recursive=True, WithDecryption=True)
    for p in page["Parameters"]
]
check(len(rec) == 15, f"15 recursively, got {len(rec)}")
check(any(p["Value"] == SECRET for p in rec), "the secret decrypted recursively")
described = [
    p
    for page in ssm.get_paginator("describe_parameters").paginate(
        ParameterFilters=[{"Key": "Path", "Option": "Recursive", "Values": ["/b3"]}]
    )
    for p in page["Parameters"]
]
check(len(described) == 15, f"15 described, got {len(described)}")
secure = [p for p in described if p["Type"] == "SecureString"]
check(secure and secure[0]["KeyId"] == "alias/tether/default", f"KeyId of the secret: {secure}")
history = [
    h for page in ssm.get_paginator("get_parameter_history").paginate(Name="/b3/a/one") for h in page["Parameters"]
]
check([h["Version"] for h in history] == [1, 2], f"history 1, 2: {history}")
check(history[0]["Labels"] == ["golden"], f"label in history: {history[0]}")
tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/b3/a/list")["TagList"]
check(tags == [{"Key": "k", "Value": "v"}], f"tags: {tags}")
removed = ssm.unlabel_parameter_version(Name="/b3/a/one", ParameterVersion=1, Labels=["golden"])
check(removed["RemovedLabels"] == ["golden"], f"unlabelled: {removed}")
deleted = ssm.delete_parameters(Names=["/b3/a/one", "/b3/nothing"])
check(deleted["DeletedParameters"] == ["/b3/a/one"], f"deleted: {deleted}")
check(deleted["InvalidParameters"] == ["/b3/nothing"], f"invalid: {deleted}")
print("ok")
