"""Running models: package formats, parameters, devices, inline and worker modes."""

from __future__ import annotations

from .envs import EnvOptions
from .options import RunnerOptions
from .params import CheckedParams, check_params, coerce_param, describe_inputs, parse_param_args, validate_params
from .runner import Runner

__all__ = ["CheckedParams", "EnvOptions", "Runner", "RunnerOptions", "check_params", "coerce_param",
           "describe_inputs", "parse_param_args", "validate_params"]
