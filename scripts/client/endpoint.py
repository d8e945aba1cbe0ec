"""SageMaker endpoints: find out what an endpoint is (real-time, serverless, inference
components, async) and call it in real time with the headers that kind needs.

Facts used here, from botocore's sagemaker-runtime model and the AWS docs it quotes:
- InvokeEndpoint's Body is at most 6,291,456 bytes; InferenceComponentName travels as the
  X-Amzn-SageMaker-Inference-Component header and is required to reach a model hosted as
  an inference component.
- "If your model is going to take 50-60 seconds of processing time, the SDK socket timeout
  should be set to be 70 seconds" (InvokeEndpoint documentation).
- A container's non-2xx answer comes back as ModelError (HTTP 424) with OriginalStatusCode
  and OriginalMessage (the container's own body).
- ModelNotReadyException (429): a serverless variant is still being provisioned.
- An inference-component endpoint at zero copies answers ValidationError "Inference
  Component has no capacity to process this request. ApplicationAutoScaling may be
  in-progress ..." until a copy is up (AWS ML blog, "scale down to zero", Dec 2024); that
  failure is what fires the NoCapacityInvocationFailures alarm that adds the first copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gen3d.client.errors import (
    AwsError,
    EndpointNotReadyError,
    InputError,
    TransportError,
    from_error_body,
)
from gen3d.client.inputs import Request
from gen3d.client.transport import Limits, Reply

REALTIME_BODY_MAX_BYTES = 6_291_456
REALTIME_READ_TIMEOUT_S = 70.0
# Statuses in which an endpoint answers invocations. Updating: autoscaling (or an
# UpdateEndpoint) is changing it, which is exactly when a scaled-in endpoint gets traffic.
SERVING_STATUSES = frozenset(
    {"InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"}
)
_NO_CAPACITY = "no capacity to process this request"


class ScalingFromZero(EndpointNotReadyError):
    """No capacity yet (scale-from-zero or serverless provisioning): safe to retry."""


def aws_error(operation: str, exc: Any) -> AwsError:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    return AwsError(f"{operation}: {code}: {message}" if code else f"{operation}: {exc}", code)


@dataclass(frozen=True)
class EndpointInfo:
    """What DescribeEndpoint and DescribeEndpointConfig say about an endpoint."""

    name: str
    status: str
    async_config: dict[str, Any] | None
    serverless: bool
    components: tuple[str, ...]  # inference components hosted (empty: a classic variant)
    environment: dict[str, str] = field(default_factory=dict)  # the model's env, if read

    @property
    def kind(self) -> str:
        if self.async_config is not None:
            return "async"
        if self.components:
            return "inference-components"
        return "serverless" if self.serverless else "real-time"


def describe_endpoint(
    sagemaker: Any, name: str, inference_component: str | None = None
) -> EndpointInfo:
    """Read the endpoint, its config, the components it hosts and its model's environment
    (for the batch limits). Refuses an endpoint that cannot serve, with the reason."""
    from botocore.exceptions import ClientError

    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as exc:
        raise aws_error(f"endpoint {name}", exc) from None
    status = endpoint["EndpointStatus"]
    if status not in SERVING_STATUSES:
        reason = endpoint.get("FailureReason")
        hint = {
            "Creating": "; wait until it is InService (gen3d deploy waits for it)",
            "Failed": f": {reason}" if reason else "",
        }.get(status, "")
        raise EndpointNotReadyError(f"endpoint {name} is {status}, it cannot serve{hint}")
    try:
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
    except ClientError as exc:
        raise aws_error(f"endpoint config of {name}", exc) from None
    variants = config.get("ProductionVariants") or []
    serverless = any("ServerlessConfig" in v for v in variants)
    model_name = next((v["ModelName"] for v in variants if v.get("ModelName")), None)
    components: tuple[str, ...] = ()
    if variants and model_name is None:  # a variant without a model hosts components
        components = _components(sagemaker, name, inference_component)
        model_name = _component_model(sagemaker, components[0])
    environment = _model_environment(sagemaker, model_name) if model_name else {}
    return EndpointInfo(
        name,
        status,
        config.get("AsyncInferenceConfig") or None,
        serverless,
        components,
        environment,
    )


def _components(sagemaker: Any, endpoint: str, chosen: str | None) -> tuple[str, ...]:
    if chosen:
        return (chosen,)
    from botocore.exceptions import ClientError

    try:
        listed = sagemaker.list_inference_components(EndpointNameEquals=endpoint)
    except ClientError as exc:
        raise aws_error(
            f"endpoint {endpoint} hosts inference components; pass inference_component= "
            "(gen3d deploy names it NAME-component) or allow ListInferenceComponents",
            exc,
        ) from None
    names = tuple(c["InferenceComponentName"] for c in listed.get("InferenceComponents", []))
    if not names:
        raise EndpointNotReadyError(f"endpoint {endpoint} hosts no inference component")
    if len(names) > 1:
        raise InputError(
            f"endpoint {endpoint} hosts {len(names)} inference components "
            f"({', '.join(names)}); pass inference_component= to choose one"
        )
    return names


def _component_model(sagemaker: Any, component: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        described = sagemaker.describe_inference_component(InferenceComponentName=component)
    except ClientError:
        return None  # only the batch limits need it; the defaults and a 413 split cover
    return described.get("Specification", {}).get("ModelName")


def _model_environment(sagemaker: Any, model_name: str) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        model = sagemaker.describe_model(ModelName=model_name)
    except ClientError:
        return {}  # as above: limits only
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    return dict(container.get("Environment") or {})


class RealtimeTransport:
    """InvokeEndpoint: real-time and serverless variants, and inference components (the
    component's name goes in every request)."""

    def __init__(
        self, name: str, runtime: Any, info: EndpointInfo | None, component: str | None = None
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.info = info
        self.component = component or (info.components[0] if info and info.components else None)
        self.description = f"endpoint {name}" + (
            f" (inference component {self.component})" if self.component else ""
        )

    def limits(self) -> Limits:
        env = self.info.environment if self.info else {}
        return Limits.from_environment(env, cap_bytes=REALTIME_BODY_MAX_BYTES)

    def request_params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {
            "EndpointName": self.name,
            "Body": request.body,
            "ContentType": request.content_type,
            "Accept": request.accept,
        }
        if request.custom_attributes:
            params["CustomAttributes"] = request.custom_attributes
        if self.component:
            params["InferenceComponentName"] = self.component
        return params

    def send(self, request: Request, timeout_s: float) -> Reply:
        from botocore.exceptions import BotoCoreError, ClientError

        if len(request.body) > REALTIME_BODY_MAX_BYTES:
            raise InputError(
                f"the request is {len(request.body):,} bytes; InvokeEndpoint takes at most "
                f"{REALTIME_BODY_MAX_BYTES:,}: send a smaller image or use an async endpoint"
            )
        try:
            response = self.runtime.invoke_endpoint(**self.request_params(request))
            return Reply(response["Body"].read(), response.get("ContentType"))
        except ClientError as exc:
            raise self._classify(exc) from None
        except BotoCoreError as exc:  # connection refused, read timeout ...
            raise TransportError(f"could not reach {self.description}: {exc}") from None

    def _classify(self, exc: Any) -> Exception:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        if code == "ModelError":
            original = exc.response.get("OriginalMessage") or message
            return from_error_body(original, status=exc.response.get("OriginalStatusCode"))
        if code == "ValidationError" and _NO_CAPACITY in message.lower():
            return ScalingFromZero(f"{self.description} has no capacity yet (scaling from zero)")
        if code == "ModelNotReadyException":
            return ScalingFromZero(f"{self.description} is being provisioned ({message})")
        return aws_error(f"InvokeEndpoint {self.name}", exc)


def runtime_client(session: Any, read_timeout_s: float) -> Any:
    """A sagemaker-runtime client whose socket outlives the 60 s invocation limit."""
    from botocore.config import Config

    config = Config(
        read_timeout=max(REALTIME_READ_TIMEOUT_S, read_timeout_s),
        retries={"mode": "standard", "max_attempts": 3},
    )
    return session.client("sagemaker-runtime", config=config)


ProgressFn = Callable[[str], None]
