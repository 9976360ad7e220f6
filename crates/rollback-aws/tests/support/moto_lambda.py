"""The Lambda side of the serverless CodeDeploy tests, through boto3 (the
reference client) against the moto server the tests started.

    python moto_lambda.py URL seed FUNCTION ALIAS VERSIONS
        creates the function afresh (and the IAM role it runs as), publishes
        VERSIONS versions (1, 2, ...) and points ALIAS at version 1;
        prints {"versions": [...]}.
    python moto_lambda.py URL alias FUNCTION ALIAS
        prints the alias as Lambda's GetAlias answers it:
        {"FunctionVersion": "...", "RoutingConfig": {...} or null}.
"""

import io
import json
import sys
import zipfile

import boto3


def client(url: str, service: str):
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def code(version: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", f"def handler(event, context):\n    return {version}\n")
    return buf.getvalue()


def seed(url: str, function: str, alias: str, versions: int) -> dict:
    iam = client(url, "iam")
    role = f"{function}-role"
    try:
        arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(
            RoleName=role,
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
    lam = client(url, "lambda")
    try:
        lam.delete_function(FunctionName=function)
    except lam.exceptions.ResourceNotFoundException:
        pass
    lam.create_function(
        FunctionName=function,
        Runtime="python3.11",
        Role=arn,
        Handler="handler.handler",
        Code={"ZipFile": code(1)},
    )
    published = []
    for v in range(1, versions + 1):
        if v > 1:
            lam.update_function_code(FunctionName=function, ZipFile=code(v))
        published.append(lam.publish_version(FunctionName=function)["Version"])
    lam.create_alias(FunctionName=function, Name=alias, FunctionVersion=published[0])
    return {"versions": published}


def alias(url: str, function: str, name: str) -> dict:
    got = client(url, "lambda").get_alias(FunctionName=function, Name=name)
    return {"FunctionVersion": got["FunctionVersion"], "RoutingConfig": got.get("RoutingConfig")}


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 5 and args[1] == "seed":
        out = seed(args[0], args[2], args[3], int(args[4]))
    elif len(args) == 4 and args[1] == "alias":
        out = alias(args[0], args[2], args[3])
    else:
        sys.exit(__doc__)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
