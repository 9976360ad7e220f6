"""moto's CodeDeploy server with the behaviour the rollback-aws tests need.

moto 5.2 implements create/get/list of CodeDeploy applications, deployment
groups and deployments, but not StopDeployment; its deployments never leave
`Created`; ListDeployments has no pagination and lists oldest first;
BatchGetDeployments takes any number of ids; and `rollbackInfo` and
`errorInformation` are always empty. This module patches moto's CodeDeploy
response handler in this process, then serves moto on a loopback port:

- StopDeployment(deploymentId, autoRollbackEnabled): a deployment that has
  completed fails with DeploymentAlreadyCompletedException; otherwise it
  becomes `Stopped`, and with autoRollbackEnabled CodeDeploy's rollback is
  created the way AWS does it: a new deployment (creator
  `codeDeployRollback`) of the revision of the group's last succeeded
  deployment, linked both ways through `rollbackInfo`.
- ListDeployments pages with `nextToken`, newest first, `PAGE_SIZE` ids a
  page (settable through the control endpoint).
- BatchGetDeployments refuses more than 25 ids (BatchLimitExceededException).
- CreateDeployment refuses a second active deployment in one group
  (DeploymentLimitExceededException), as AWS does.
- Lambda applications (computePlatform Lambda) shift the alias of their
  AppSpec in moto's own Lambda service as CodeDeploy does: a deployment
  moved to `InProgress` points the alias at TargetVersion at once
  (CodeDeployDefault.LambdaAllAtOnce) or sends 10 % of its traffic there
  (canary and linear configurations: RoutingConfig AdditionalVersionWeights);
  `Succeeded` points it at TargetVersion alone; `Failed` and `Stopped` leave
  it where traffic shifting had it (AWS's troubleshooting guide: a stopped
  Lambda deployment without rollback can leave the alias on two versions).
  A function, alias or version that does not exist fails the deployment
  (INVALID_LAMBDA_FUNCTION). StopDeployment with autoRollbackEnabled rolls
  a Lambda deployment back as CodeDeploy does: a rollback deployment whose
  AppSpec shifts the alias from TargetVersion back to CurrentVersion.

Control endpoint for the tests (plain JSON over HTTP on the same port):

- POST /_rollback_test/deployments/<id>/status  {"status": "InProgress",
  "errorCode": "...", "errorMessage": "..."}: move a deployment to any status.
- POST /_rollback_test/config {"pageSize": 7}
- POST /_rollback_test/calls {}: how often each action was called so far.
- POST /_rollback_test/fail  {"action": "CreateDeployment", "code":
  "ThrottlingException", "httpStatus": 400, "message": "...", "times": 1,
  "match": "...", "after": false}: the next `times` calls of `action` (whose
  request body contains `match`, when given) fail with that AWS error. With
  `after`, the call takes effect first and only its answer is the error, as
  when an answer is lost on the way back.

Run: python moto_codedeploy_ext.py [--page-size N]. It binds 127.0.0.1:0, prints
`READY http://127.0.0.1:<port>` on stdout, and exits when its stdin closes,
so it dies with the test process that started it.
"""

import hashlib
import io
import json
import os
import re
import sys
import threading
from typing import Any

import yaml
from moto.awslambda.models import lambda_backends
from moto.codedeploy import models, responses
from moto.codedeploy.exceptions import CodeDeployException
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

TERMINAL = ("Succeeded", "Failed", "Stopped")
STATUSES = (
    "Created",
    "Queued",
    "InProgress",
    "Baking",
    "Succeeded",
    "Failed",
    "Stopped",
    "Ready",
)
BATCH_LIMIT = 25

LOCK = threading.RLock()
CONFIG: dict[str, Any] = {"pageSize": 100}
# action name -> list of pending injected failures
FAILURES: dict[str, list[dict[str, Any]]] = {}
# action name -> number of calls
CALLS: dict[str, int] = {}


class _Error(CodeDeployException):
    code = 400

    def __init__(self, error_type: str, message: str):
        super().__init__(error_type, message)


def _backends() -> list[models.CodeDeployBackend]:
    found = []
    for account in list(dict.keys(models.codedeploy_backends)):
        per_account = dict.__getitem__(models.codedeploy_backends, account)
        for backend in list(dict.values(per_account)):
            found.append(backend)
    return found


def _find_deployment(
    deployment_id: str,
) -> tuple[models.CodeDeployBackend, models.DeploymentInfo] | None:
    for backend in _backends():
        if deployment_id in backend.deployments:
            return backend, backend.deployments[deployment_id]
    return None


def _lambda_properties(deployment: models.DeploymentInfo) -> dict[str, Any] | None:
    """The resource key and Properties of a Lambda deployment's AppSpec."""
    if getattr(deployment.application, "compute_platform", None) != "Lambda":
        return None
    revision = deployment.revision or {}
    holder = revision.get("appSpecContent") or revision.get("string") or {}
    try:
        doc = yaml.safe_load(holder.get("content") or "")
        (resource,) = doc["Resources"]
        ((key, body),) = resource.items()
        props = body["Properties"]
        found = {k: str(props[k]) for k in ("Name", "Alias", "CurrentVersion", "TargetVersion")}
    except Exception:  # noqa: BLE001 - an AppSpec CodeDeploy would refuse
        return None
    found["resource"] = key
    return found


def _backend_of(deployment: models.DeploymentInfo) -> models.CodeDeployBackend | None:
    for backend in _backends():
        if backend.deployments.get(deployment.deployment_id) is deployment:
            return backend
    return None


def _shift_alias(deployment: models.DeploymentInfo, status: str) -> None:
    """Move a Lambda deployment's alias as CodeDeploy does at `status`."""
    props = _lambda_properties(deployment)
    backend = _backend_of(deployment)
    if props is None or backend is None:
        return
    target = props["TargetVersion"]
    config = str(deployment.deployment_config_name)
    if status == "InProgress" and "AllAtOnce" not in config:
        version, routing = props["CurrentVersion"], {"AdditionalVersionWeights": {target: 0.1}}
    elif status in ("InProgress", "Succeeded"):
        version, routing = target, {}
    else:
        return
    functions = lambda_backends[backend.account_id][backend.region_name]
    try:
        functions.update_alias(props["Alias"], props["Name"], version, None, routing)
    except Exception as e:  # noqa: BLE001 - moto's Lambda errors
        deployment.status = "Failed"
        deployment.complete_time = utcnow()
        deployment.ext_error = {
            "code": "INVALID_LAMBDA_FUNCTION",
            "message": f"could not shift alias {props['Alias']} of {props['Name']} to version {version}: {e}",
        }


def _set_status(
    deployment: models.DeploymentInfo,
    status: str,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    _set_status_only(deployment, status, error_code, error_message)
    if status != "Failed":
        _shift_alias(deployment, status)


def _set_status_only(
    deployment: models.DeploymentInfo,
    status: str,
    error_code: str | None,
    error_message: str | None,
) -> None:
    now = utcnow()
    deployment.status = status
    if status != "Created" and deployment.start_time is None:
        deployment.start_time = now
    if status in TERMINAL:
        deployment.complete_time = now
    overview = deployment.deployment_overview
    for key in overview:
        overview[key] = 0
    bucket = {
        "Created": "Pending",
        "Queued": "Pending",
        "InProgress": "InProgress",
        "Baking": "InProgress",
        "Ready": "Ready",
        "Succeeded": "Succeeded",
        "Failed": "Failed",
        "Stopped": "Skipped",
    }[status]
    overview[bucket] = 1
    if error_code or error_message:
        deployment.ext_error = {
            "code": error_code or "INTERNAL_ERROR",
            "message": error_message or "",
        }


# --- patched serialisation ----------------------------------------------------

_original_deployment_info = responses._deployment_info


def _deployment_info(deployment: models.DeploymentInfo) -> dict[str, Any]:
    info = _original_deployment_info(deployment)
    info["rollbackInfo"] = dict(getattr(deployment, "ext_rollback_info", {}))
    info["errorInformation"] = dict(getattr(deployment, "ext_error", {}))
    return info


responses._deployment_info = _deployment_info


# --- patched and new actions ----------------------------------------------------


def _list_deployments(self: responses.CodeDeployResponse) -> ActionResult:
    ids = self.codedeploy_backend.list_deployments(
        application_name=self._get_param("applicationName"),
        deployment_group_name=self._get_param("deploymentGroupName"),
        external_id=self._get_param("externalId"),
        include_only_statuses=self._get_param("includeOnlyStatuses"),
        create_time_range=self._get_param("createTimeRange", {}),
    )
    ids.reverse()  # newest first, as AWS lists them
    token = self._get_param("nextToken")
    start = 0
    if token:
        if not re.fullmatch(r"page-[0-9]+", token) or int(token[5:]) > len(ids):
            raise _Error("InvalidNextTokenException", f"The next token {token} is invalid.")
        start = int(token[5:])
    size = int(CONFIG["pageSize"])
    result: dict[str, Any] = {"deployments": ids[start : start + size]}
    if start + size < len(ids):
        result["nextToken"] = f"page-{start + size}"
    return ActionResult(result)


def _batch_get_deployments(self: responses.CodeDeployResponse) -> ActionResult:
    ids = self._get_param("deploymentIds") or []
    if len(ids) > BATCH_LIMIT:
        raise _Error(
            "BatchLimitExceededException",
            f"The maximum number of deployment ids is {BATCH_LIMIT}; got {len(ids)}.",
        )
    found = self.codedeploy_backend.batch_get_deployments(deployment_ids=ids)
    return ActionResult({"deploymentsInfo": [_deployment_info(d) for d in found]})


_original_create_deployment = responses.CodeDeployResponse.create_deployment


def _create_deployment(self: responses.CodeDeployResponse) -> ActionResult:
    app = self._get_param("applicationName")
    group = self._get_param("deploymentGroupName")
    with LOCK:
        for d in self.codedeploy_backend.deployments.values():
            if (
                d.application_name == app
                and d.deployment_group_name == group
                and d.status not in TERMINAL
            ):
                raise _Error(
                    "DeploymentLimitExceededException",
                    f"The Deployment Group '{group}' already has an active Deployment '{d.deployment_id}'",
                )
        return _original_create_deployment(self)


def _stop_deployment(self: responses.CodeDeployResponse) -> ActionResult:
    deployment_id = self._get_param("deploymentId")
    auto_rollback = bool(self._get_param("autoRollbackEnabled"))
    backend = self.codedeploy_backend
    with LOCK:
        deployment = backend.get_deployment(deployment_id)
        if deployment.status in TERMINAL:
            raise _Error(
                "DeploymentAlreadyCompletedException",
                f"The deployment {deployment_id} has already completed.",
            )
        _set_status(deployment, "Stopped")
        deployment.ext_error = {
            "code": "MANUAL_STOP",
            "message": "The deployment was stopped by the user.",
        }
        if not auto_rollback:
            return ActionResult(
                {"status": "Succeeded", "statusMessage": "The deployment was stopped."}
            )
        lambda_props = _lambda_properties(deployment)
        if lambda_props is not None:
            # CodeDeploy shifts the alias back to the version it came from.
            content = json.dumps(
                {
                    "version": 0.0,
                    "Resources": [
                        {
                            lambda_props["resource"]: {
                                "Type": "AWS::Lambda::Function",
                                "Properties": {
                                    "Name": lambda_props["Name"],
                                    "Alias": lambda_props["Alias"],
                                    "CurrentVersion": lambda_props["TargetVersion"],
                                    "TargetVersion": lambda_props["CurrentVersion"],
                                },
                            }
                        }
                    ],
                }
            )
            restored = {
                "revisionType": "AppSpecContent",
                "appSpecContent": {
                    "content": content,
                    "sha256": hashlib.sha256(content.encode()).hexdigest(),
                },
            }
            return _roll_back(backend, deployment, restored)
        good = [
            d
            for d in backend.deployments.values()
            if d.application_name == deployment.application_name
            and d.deployment_group_name == deployment.deployment_group_name
            and d.status == "Succeeded"
            and d.deployment_id != deployment_id
        ]
        if not good:
            deployment.ext_rollback_info = {
                "rollbackMessage": "Automatic rollback was not performed: no earlier deployment of this deployment group succeeded."
            }
            return ActionResult(
                {
                    "status": "Succeeded",
                    "statusMessage": "The deployment was stopped; there was no revision to roll back to.",
                }
            )
        last_good = max(good, key=lambda d: d.create_time)
        return _roll_back(backend, deployment, last_good.revision)


def _roll_back(
    backend: models.CodeDeployBackend,
    deployment: models.DeploymentInfo,
    revision: dict[str, Any],
) -> ActionResult:
    """CodeDeploy's rollback of a stopped deployment: a deployment of `revision`."""
    deployment_id = deployment.deployment_id
    with LOCK:
        rollback = models.DeploymentInfo(
            deployment.application,
            deployment.deployment_group,
            revision,
            deployment.deployment_config_name,
            None,
            deployment.ignore_application_stop_failures,
            deployment.target_instances,
            deployment.auto_rollback_configuration,
            deployment.update_outdated_instances_only,
            deployment.file_exists_behavior,
            deployment.override_alarm_configuration,
            "codeDeployRollback",
        )
        rollback.ext_rollback_info = {
            "rollbackTriggeringDeploymentId": deployment_id,
        }
        backend.deployments[rollback.deployment_id] = rollback
        deployment.ext_rollback_info = {
            "rollbackDeploymentId": rollback.deployment_id,
            "rollbackMessage": f"The deployment was rolled back by deployment {rollback.deployment_id}.",
        }
    return ActionResult(
        {
            "status": "Pending",
            "statusMessage": "The deployment is being stopped and rolled back.",
        }
    )


responses.CodeDeployResponse.list_deployments = _list_deployments
responses.CodeDeployResponse.batch_get_deployments = _batch_get_deployments
responses.CodeDeployResponse.create_deployment = _create_deployment
responses.CodeDeployResponse.stop_deployment = _stop_deployment


# --- control endpoint and failure injection --------------------------------------

CONTROL = "/_rollback_test/"


def _json_response(start_response: Any, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _read_json(environ: dict[str, Any]) -> dict[str, Any]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b"{}"
    value = json.loads(raw or b"{}")
    if not isinstance(value, dict):
        raise ValueError("the body must be a JSON object")
    return value


def _control(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ.get("PATH_INFO", "")[len(CONTROL) :]
    try:
        body = _read_json(environ)
    except ValueError as e:
        return _json_response(start_response, "400 Bad Request", {"error": str(e)})
    with LOCK:
        m = re.fullmatch(r"deployments/([^/]+)/status", path)
        if m:
            status = body.get("status")
            if status not in STATUSES:
                return _json_response(
                    start_response, "400 Bad Request", {"error": f"unknown status {status!r}"}
                )
            found = _find_deployment(m.group(1))
            if found is None:
                return _json_response(
                    start_response, "404 Not Found", {"error": f"no deployment {m.group(1)}"}
                )
            _set_status(found[1], status, body.get("errorCode"), body.get("errorMessage"))
            return _json_response(start_response, "200 OK", {"status": status})
        if path == "config":
            if "pageSize" in body:
                size = body["pageSize"]
                if not isinstance(size, int) or size < 1:
                    return _json_response(
                        start_response, "400 Bad Request", {"error": "pageSize must be a positive integer"}
                    )
                CONFIG["pageSize"] = size
            return _json_response(start_response, "200 OK", dict(CONFIG))
        if path == "calls":
            return _json_response(start_response, "200 OK", dict(CALLS))
        if path == "fail":
            action = body.get("action")
            if not isinstance(action, str) or not isinstance(body.get("code"), str):
                return _json_response(
                    start_response, "400 Bad Request", {"error": "action and code are required"}
                )
            FAILURES.setdefault(action, []).extend(
                [
                    {
                        "code": body["code"],
                        "httpStatus": int(body.get("httpStatus", 400)),
                        "message": body.get("message", "injected by the test"),
                        "match": str(body.get("match", "")),
                        "after": bool(body.get("after", False)),
                    }
                ]
                * int(body.get("times", 1))
            )
            return _json_response(start_response, "200 OK", {"pending": len(FAILURES[action])})
    return _json_response(start_response, "404 Not Found", {"error": f"no control path {path}"})


def _injected_failure(environ: dict[str, Any]) -> dict[str, Any] | None:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    action = target.rsplit(".", 1)[-1]
    # read the body, and hand moto a fresh stream of it
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    text = raw.decode("utf-8", "replace")
    with LOCK:
        if action:
            CALLS[action] = CALLS.get(action, 0) + 1
        pending = FAILURES.get(action, [])
        for i, failure in enumerate(pending):
            if failure["match"] in text:
                return pending.pop(i)
    return None


def make_app() -> Any:
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith(CONTROL):
            return _control(environ, start_response)
        failure = _injected_failure(environ)
        if failure is not None and failure["after"]:
            # Carry the call out, then lose its answer.
            for _ in moto_app(environ, lambda *args, **kwargs: None):
                pass
        if failure is not None:
            data = json.dumps({"__type": failure["code"], "message": failure["message"]}).encode()
            start_response(
                f"{failure['httpStatus']} Injected",
                [
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("Content-Length", str(len(data))),
                    ("x-amzn-ErrorType", failure["code"]),
                ],
            )
            return [data]
        return moto_app(environ, start_response)

    return app


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--page-size" and args[1].isdigit() and int(args[1]) > 0:
        CONFIG["pageSize"] = int(args[1])
    elif args:
        sys.exit(f"usage: {sys.argv[0]} [--page-size N]")
    server = make_server(
        "127.0.0.1", 0, make_app(), threaded=True, request_handler=MotoRequestHandler
    )
    port = server.server_address[1]

    def exit_when_parent_goes() -> None:
        # The test process holds our stdin open; EOF means it is gone.
        while sys.stdin.buffer.read(4096):
            pass
        os._exit(0)

    threading.Thread(target=exit_when_parent_goes, daemon=True).start()
    print(f"READY http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
