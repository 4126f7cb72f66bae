"""fal_kontext: the client for FLUX.1 Kontext on fal.ai (the local emulator is a package of its own,
``fal_kontext_emulator``, installed with the ``mock`` extra).

The client::

    from fal_kontext import Kontext

    with Kontext() as kontext:                      # FAL_KEY from the environment; queue.fal.run
        result = kontext.edit("Put a donut next to the flour", image="kitchen.jpg", model="max")
        kontext.save(result, "out/")

``AsyncKontext`` has the same verbs for asyncio. Errors are in ``fal_kontext.errors``; webhook verification in
``fal_kontext.webhooks``.
"""

from fal_kontext_api.models import CancelStatus, Image, KontextInput, KontextMultiInput, KontextOutput

from ._version import __version__
from .aio import AsyncHandle, AsyncKontext
from .client import Handle, Kontext
from .config import Credentials, PollSchedule, RequestTimeouts
from .endpoints import Endpoint
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContentPolicyError,
    DirectUnavailableError,
    InvalidInputError,
    KontextError,
    MissingCredentialsError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    RequestCancelledError,
    RequestFailedError,
    ResultNotReadyError,
    ServerError,
    StartTimeoutError,
    SubmitOutcomeUnknownError,
    UnexpectedResponseError,
    ValidationError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from .recovery import LookupStarted, RecoveryPolicy
from .results import EditResult, ResultImage
from .retry import RetryPolicy
from .status import Completed, InProgress, Queued, RequestMetrics, Status

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncHandle",
    "AsyncKontext",
    "AuthenticationError",
    "BadRequestError",
    "CancelStatus",
    "Completed",
    "ContentPolicyError",
    "Credentials",
    "DirectUnavailableError",
    "EditResult",
    "Endpoint",
    "Handle",
    "Image",
    "InProgress",
    "InvalidInputError",
    "Kontext",
    "KontextError",
    "KontextInput",
    "KontextMultiInput",
    "KontextOutput",
    "LookupStarted",
    "MissingCredentialsError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PollSchedule",
    "Queued",
    "RateLimitError",
    "RecoveryPolicy",
    "RequestCancelledError",
    "RequestFailedError",
    "RequestMetrics",
    "RequestTimeouts",
    "ResultImage",
    "ResultNotReadyError",
    "RetryPolicy",
    "ServerError",
    "StartTimeoutError",
    "Status",
    "SubmitOutcomeUnknownError",
    "UnexpectedResponseError",
    "ValidationError",
    "WaitTimeoutError",
    "WebhookVerificationError",
    "__version__",
]
