"""Keeps PEFT's prefix tuning generating with its prefix across transformers releases.

transformers 5.24 renamed the cache argument of `generate`'s model inputs from `past_key_values` to `cache`. PEFT
0.21 still looks for `past_key_values` to decide whether the prefix must be injected, so generation silently ran
without the prefix. Both wrappers below translate the name around PEFT's hook and do nothing where the names agree.
"""

from __future__ import annotations

_WRAPPED = "_studio_cache_name_bridge"


def bridge_prefix_generation(peft_model) -> None:
    """Make `peft_model.generate` inject and keep its prefix whatever the installed cache argument is called."""
    if getattr(peft_model, _WRAPPED, False) or not hasattr(peft_model, "base_model_prepare_inputs_for_generation"):
        return
    base_prepare = peft_model.base_model_prepare_inputs_for_generation
    peft_prepare = peft_model.prepare_inputs_for_generation
    renamed = {"cache": False}

    def base_inputs_as_peft_expects(*args, **kwargs):
        inputs = base_prepare(*args, **kwargs)
        renamed["cache"] = "cache" in inputs and "past_key_values" not in inputs
        if renamed["cache"]:
            inputs["past_key_values"] = inputs.pop("cache")
        return inputs

    def inputs_as_model_expects(*args, **kwargs):
        inputs = peft_prepare(*args, **kwargs)
        if renamed["cache"] and "past_key_values" in inputs:
            inputs["cache"] = inputs.pop("past_key_values")
        return inputs

    peft_model.base_model_prepare_inputs_for_generation = base_inputs_as_peft_expects
    peft_model.prepare_inputs_for_generation = inputs_as_model_expects
    setattr(peft_model, _WRAPPED, True)
