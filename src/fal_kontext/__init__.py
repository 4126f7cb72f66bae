"""fal_kontext: the client for FLUX.1 Kontext on fal.ai (the local emulator is a package of its own,
``fal_kontext_emulator``, installed with the ``mock`` extra).

The client::

    from fal_kontext import Kontext

    with Kontext() as kontext:                      # FAL_KEY from the environment; queue.fal.run
        result = kontext.edit("Put a donut next to the flour", image="kitchen.jpg", model="max")
        kontext.save(result, "out/")

``AsyncKontext`` has the same verbs for asyncio. Errors are in ``fal_kontext.errors``; webhook verification in
``fal_kontext.webhooks``.

What the spec says, for code that builds inputs itself (``fal_kontext.batch`` does, from these alone):
``EndpointSpec`` (``Endpoint(...).spec``: family, tier, image field, input schema, price), ``resolved_schema`` (an
input schema by name, with its defaults and ranges), ``check_input`` (a dict of fields checked against an endpoint's
schema without sending anything: every way it breaks it, in ``InvalidInputError.problems``) and
``image_source_to_url`` (a local image inlined as a data URI, at most ``DEFAULT_MAX_IMAGE_BYTES`` unless told
otherwise).
"""

from fal_kontext_api.models import CancelStatus, Image, KontextInput, KontextMultiInput, KontextOutput

from ._version import __version__
from .aio import AsyncHandle, AsyncKontext
from .client import Handle, Kontext
from .config import Credentials, RequestTimeouts
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
    FieldProblem,
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
from .files import DEFAULT_MAX_IMAGE_BYTES, image_source_to_url
from .protocol.inputs import check_input
from .protocol.polling import LearnedPolling, PollSchedule
from .protocol.recovery import LookupStarted, RecoveryPolicy
from .results import EditResult, ResultImage
from .retry import RetryPolicy
from .spec import EndpointSpec, resolved_schema
from .status import Completed, InProgress, Queued, RequestMetrics, Status

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
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
    "EndpointSpec",
    "FieldProblem",
    "Handle",
    "Image",
    "InProgress",
    "InvalidInputError",
    "Kontext",
    "KontextError",
    "KontextInput",
    "KontextMultiInput",
    "KontextOutput",
    "LearnedPolling",
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
    "check_input",
    "image_source_to_url",
    "resolved_schema",
]
