"""Gen3D's Python client: a photo in, a 3D asset out, from a local server or a SageMaker
endpoint (real-time, serverless, inference components, async).

    from gen3d.client import Client
    client = Client.endpoint("my-endpoint", region="us-east-1")
    result = client.generate("photo.png", mask="mask.png")
    result.save("photo.glb")

The SageMaker SDK integration (serializers, a predictor) is the optional extra
`gen3d[sagemaker]`, in gen3d.client.sdk; nothing here imports the SDK.
"""

from gen3d.client.async_endpoint import AsyncJob
from gen3d.client.core import BatchError, Client, print_progress
from gen3d.client.errors import (
    AsyncInferenceError,
    AwsError,
    BadRequestError,
    CapacityError,
    DeadlineExceededError,
    EndpointNotReadyError,
    Gen3DClientError,
    InputError,
    InternalServerError,
    NotAcceptableError,
    PayloadTooLargeError,
    QueueFullError,
    ServerDeadlineError,
    ServerError,
    ServerNotReadyError,
    TransportError,
    UnprocessableError,
    UnsupportedMediaTypeError,
)
from gen3d.client.result import Result, metadata_of
from gen3d.client.transport import Backoff, Limits, Reply

__all__ = [
    "AsyncInferenceError",
    "AsyncJob",
    "AwsError",
    "Backoff",
    "BadRequestError",
    "BatchError",
    "CapacityError",
    "Client",
    "DeadlineExceededError",
    "EndpointNotReadyError",
    "Gen3DClientError",
    "InputError",
    "InternalServerError",
    "Limits",
    "NotAcceptableError",
    "PayloadTooLargeError",
    "QueueFullError",
    "Reply",
    "Result",
    "ServerDeadlineError",
    "ServerError",
    "ServerNotReadyError",
    "TransportError",
    "UnprocessableError",
    "UnsupportedMediaTypeError",
    "metadata_of",
    "print_progress",
]
