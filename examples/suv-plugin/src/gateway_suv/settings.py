"""``plugins/suv.toml``, validated by the gateway with this model (errors name file:line: key)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SuvSettings(BaseModel):
    # A misspelt key is refused (with its file:line), not silently ignored.
    # `enabled` is the core's: it never reaches this model.
    model_config = ConfigDict(extra="forbid")

    #: Which factor `ls` and `suv --value` use when an image has both.
    prefer: Literal["philips", "computed"] = Field(
        "philips", description="the vendor's (7053,1000) or the one computed from the header")
    #: Modalities whose objects are looked at.
    modalities: list[str] = Field(default_factory=lambda: ["PT"])


def settings_of(config) -> SuvSettings:
    return config.plugin_settings_as("suv", SuvSettings)
