"""ChatML templates (`<|im_start|>`) of no tool-calling family, e.g. SmolLM2 and SmolLM3: the
generic family's behaviour under their own name."""

from __future__ import annotations

from localgw.chat.families.base import Family
from localgw.chat.families.generic import Generic


class ChatML(Generic):
    name = "chatml"
    markers = ("<|im_start|>",)
    detect = Family.detect  # by its markers, where the generic family takes every template
