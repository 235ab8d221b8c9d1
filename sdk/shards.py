"""Shards of a generation run: contiguous blocks of the sample indices.

A run of N samples (indices ``0..N-1``, sample ``i`` from seed ``seed + i``) split into
``count`` shards gives shard ``k`` the block ``[k*N//count, (k+1)*N//count)``. By the seed
contract a sample does not depend on which process makes it, so every shard writes into
the same output folder (the same layout, the same sidecar) and the union of the shards is
the run: file for file what one process writes. Shards are numbered from 0, like
``torchrun``'s ``RANK``.

The shard of a process comes from ``--shard K/N`` (``generate_to(shard=...)``), else from
the environment a launcher sets (:func:`shard_from_env`): ``torchrun``'s ``RANK`` and
``WORLD_SIZE``, or a Slurm job array's ``SLURM_ARRAY_TASK_ID`` and
``SLURM_ARRAY_TASK_COUNT`` (counted from ``SLURM_ARRAY_TASK_MIN``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from synthmed.registry.errors import ConfigError

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: a shard is K/N with 0 <= K < N",
                              hint="shards are numbered from 0: --shard 0/4, 1/4, 2/4 and 3/4 make one run")

    @classmethod
    def parse(cls, text: "str | Shard | tuple[int, int]") -> "Shard":
        """``"K/N"``, a ``(K, N)`` pair, or a Shard."""
        if isinstance(text, Shard):
            return text
        if isinstance(text, tuple) and len(text) == 2:
            return cls(int(text[0]), int(text[1]))
        m = _SHARD.match(str(text))
        if not m:
            raise ConfigError(f"--shard {text!r} is not K/N", hint="e.g. --shard 0/4 for the first of four shards")
        return cls(int(m.group(1)), int(m.group(2)))

    def block(self, total: int) -> range:
        """The indices of ``0..total-1`` this shard makes."""
        return range(self.index * total // self.count, (self.index + 1) * total // self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard(0, 1)


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"environment variable {name}={env[name]!r} is not a whole number",
                          hint="unset it, or give --shard K/N") from None


def shard_from_env(env: Mapping[str, str]) -> tuple[Shard, str] | None:
    """The shard a launcher assigned to this process, and which variables said so:
    ``torchrun`` (``RANK``/``WORLD_SIZE``) first, then a Slurm job array
    (``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``, less ``SLURM_ARRAY_TASK_MIN``).
    None when neither is set, or when they describe a single process."""
    if env.get("WORLD_SIZE") and env.get("RANK") is not None and env.get("RANK") != "":
        size, rank = _int(env, "WORLD_SIZE"), _int(env, "RANK")
        if size > 1:
            if not 0 <= rank < size:
                raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={size}", hint="check the launcher, or give --shard")
            return Shard(rank, size), f"RANK={rank} WORLD_SIZE={size} (torchrun)"
    if env.get("SLURM_ARRAY_TASK_COUNT") and env.get("SLURM_ARRAY_TASK_ID"):
        count, task = _int(env, "SLURM_ARRAY_TASK_COUNT"), _int(env, "SLURM_ARRAY_TASK_ID")
        first = _int(env, "SLURM_ARRAY_TASK_MIN") if env.get("SLURM_ARRAY_TASK_MIN") else 0
        if count > 1:
            k = task - first
            if not 0 <= k < count:
                raise ConfigError(
                    f"SLURM_ARRAY_TASK_ID={task} is not one of {count} tasks from {first}",
                    hint="use a contiguous array (e.g. #SBATCH --array=0-7), or give --shard K/N")
            return Shard(k, count), f"SLURM_ARRAY_TASK_ID={task} SLURM_ARRAY_TASK_COUNT={count} (Slurm array)"
    return None
