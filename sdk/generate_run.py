"""The inline run: a request's samples made batch by batch and written while the model
makes the next batch.

:func:`write_run` is the loop of :meth:`synthmed.site.Model.run` once the output folder
is open and the runner chosen: indices already complete are skipped, the others are made
from seeds ``seed + i`` and handed to a :class:`~synthmed.writer_pool.WriterPool`, and
the folder is closed (the sidecar, and the manifest when the run is complete) whatever
happens.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from synthmed.registry.runner import Runner

from .output_folder import OutputFolder
from .request import GenerationRequest, GenerationResult
from .writer_pool import WriterOptions, WriterPool


def write_run(runner: Runner, out: OutputFolder, request: GenerationRequest, checked: Mapping[str, Any],
              writer_options: WriterOptions) -> GenerationResult:
    """Make ``request``'s block of samples with ``runner`` into the open folder ``out``."""
    indices, seed, progress, inputs = request.indices, request.seed, request.progress, request.inputs
    started = time.monotonic()
    skipped = 0
    step = runner.batch_size
    complete: bool | None = False
    threads = writer_options.threads
    # at most two batches' samples queued: memory stays flat in the sample count
    pool = WriterPool(out.write, threads, max_pending=max(2 * step, 4 * threads))
    try:
        for start in range(indices.start, indices.stop, step):
            block = range(start, min(indices.stop, start + step))
            todo = [i for i in block if not out.is_complete(i)]
            skipped += len(block) - len(todo)
            if todo:
                seeds = [seed + i for i in todo]
                batches = (runner.iter_batches(seeds, checked) if inputs is None else
                           runner.iter_input_batches(seeds, checked, inputs.for_samples(todo, request.per_input)))
                for made, batch in batches:
                    pool.submit_batch([s - seed for s in made], batch)
            if progress is not None:
                progress(pool.done + skipped, len(indices))
        pool.drain()
        if progress is not None:
            progress(pool.done + skipped, len(indices))
        # complete when every sample of the run is there: the other shards' too, and
        # every one of the largest count any run into this folder asked for
        complete = None
    except BaseException:
        pool.close(cancel=True)
        raise
    finally:
        pool.close()
        finished = out.close(complete=complete)
    return GenerationResult(request.folder, request.n, pool.done, skipped, time.monotonic() - started,
                            out.sidecar_path, [s.name for s in out.specs], dict(out.left_out), complete=finished,
                            shard=str(request.shard) if request.sharded else None)
