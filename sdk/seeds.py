"""The seed policy of runs made without a seed (one place for it).

A call that names a seed reproduces exactly: sample *i* uses seed ``seed + i``. A call
without one (``Generators.generate``, its datasets and DataLoaders) draws a fresh first
seed with :func:`fresh_seed`, records it (the output folder's ``synthmed.json``,
``Generators.last_seed``, ``dataset.seed``, ``loader.dataset.epoch_seeds``) and so can
be made again with ``seed=<that seed>``. ``Site``/``Model`` keep seed 0 as their default.
"""

from __future__ import annotations

import secrets

#: fresh seeds are multiples of this, so a run of up to this many samples starts on a
#: medigan chunk boundary (one generate() call fewer)
SEED_ALIGN = 4096
#: fresh seeds lie in [0, SEED_SPACE)
SEED_SPACE = 2**62


def fresh_seed() -> int:
    """A new random first seed (from the OS's random source, a multiple of :data:`SEED_ALIGN`)."""
    return secrets.randbelow(SEED_SPACE // SEED_ALIGN) * SEED_ALIGN
