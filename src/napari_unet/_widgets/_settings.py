"""Remember widget values between napari sessions (like magicgui's ``persist=True``).

Values of the named controls are written to a small JSON file per widget in the
user's config folder (``NAPARI_UNET_SETTINGS_DIR`` overrides it, e.g. in tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable


def settings_dir() -> Path:
    override = os.environ.get("NAPARI_UNET_SETTINGS_DIR")
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-unet"))


class PersistedValues:
    """Restore and save the values of ``controls`` (magicgui value widgets) under ``name``."""

    def __init__(self, name: str, controls: Iterable[Any]):
        self.path = settings_dir() / f"{name}.json"
        self.controls = {c.name: c for c in controls}

    def restore(self) -> None:
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        for key, value in saved.items():
            control = self.controls.get(key)
            if control is None:
                continue
            try:
                control.value = value
            except (ValueError, TypeError):  # an option that no longer exists
                pass

    def connect(self) -> None:
        for control in self.controls.values():
            control.changed.connect(self.save)

    def save(self, *_: Any) -> None:
        values = {}
        for key, control in self.controls.items():
            value = control.value
            if isinstance(value, Path):
                value = str(value)
            if isinstance(value, (bool, int, float, str)) or value is None:
                values[key] = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(values, indent=1))
            os.replace(tmp, self.path)
        except OSError:  # settings are a convenience; never fail the widget over them
            pass
