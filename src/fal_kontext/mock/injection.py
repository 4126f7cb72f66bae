"""Fault injection around a handler: what happens before the call is handled, and to its answer after."""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from fal_kontext.mock.faults import Fault
from fal_kontext.mock.replies import CutResponse, DroppedResponse, fault_reply
from fal_kontext.mock.state import EmulatorState


async def before_handling(state: EmulatorState, operation_id: str, group: str) -> tuple[Fault | None, Response | None]:
    """Draw the call's fault and apply what comes before handling: latency, a slow answer, or an answer
    instead of handling it (a status fault, a drop). Returns the fault and that answer (None: handle the call)."""
    latency, fault = state.faults.next(operation_id, group)
    if latency:
        await asyncio.sleep(latency)
    if fault is None:
        return None, None
    state.counters.faults[operation_id] += 1
    if fault.kind == "drop":
        return fault, DroppedResponse()
    if fault.kind == "status":
        return fault, fault_reply(fault)
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
    return fault, None


def after_handling(fault: Fault | None, response: Response) -> Response:
    """What a forwarded-then-lost fault makes of a handled call's answer (others leave it as it is)."""
    if fault is None:
        return response
    if fault.kind == "drop-after":
        return DroppedResponse()
    if fault.kind == "lost":
        return fault_reply(fault, response.headers.get("x-fal-request-id"))
    if fault.kind == "cut":
        return CutResponse(response)
    return response
