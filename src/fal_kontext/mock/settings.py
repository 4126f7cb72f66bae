"""The settings that can change while the emulator runs (`/_emulator/settings`), with their checks."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from fal_kontext.mock.remote import REMOTE_IMAGE_MODES, RemoteImages


@dataclass
class RuntimeSettings:
    """Attributes as in EmulatorConfig (`remote_images`, `request_list_pending`, `request_list_delay`)."""

    remote_images: RemoteImages = "placeholder"
    request_list_pending: bool = False
    request_list_delay: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The settings as the admin API shows them."""
        return asdict(self)

    def update(self, data: Any) -> list[str]:
        """Apply a partial update (a JSON object of some of the settings); nothing changes when any value is
        wrong. Returns the problems, each naming its setting."""
        if not isinstance(data, dict):
            return ["send a JSON object with some of " + ", ".join(self.as_json())]
        problems = [f"{name}: unknown setting" for name in data if name not in self.as_json()]
        mode = data.get("remote_images", self.remote_images)
        if mode not in REMOTE_IMAGE_MODES:
            problems.append(f"remote_images: must be one of {list(REMOTE_IMAGE_MODES)}")
        pending = data.get("request_list_pending", self.request_list_pending)
        if not isinstance(pending, bool):
            problems.append("request_list_pending: must be true or false")
        delay = data.get("request_list_delay", self.request_list_delay)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
            problems.append("request_list_delay: must be a number of seconds >= 0")
        if not problems:
            self.remote_images, self.request_list_pending, self.request_list_delay = mode, pending, float(delay)
        return problems
