"""Running models: package formats, parameters, devices, inline and worker modes."""

from __future__ import annotations

from .envs import EnvOptions
from .params import coerce_param, describe_inputs, parse_param_args, validate_params
from .runner import Runner

__all__ = ["EnvOptions", "Runner", "coerce_param", "describe_inputs", "parse_param_args", "validate_params"]
