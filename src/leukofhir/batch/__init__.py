"""``leukofhir batch``: folders of messages processed in parallel, exactly once, resumably.

Modules, one subject each: :mod:`.scan` (which files, in which order), :mod:`.naming`
(output names), :mod:`.store` (atomic writes, moves), :mod:`.ledger` (what was done),
:mod:`.work` (a worker: file in, outputs and rows out), :mod:`.fault` (an exception of the
core rejects one message, never a worker), :mod:`.executor` (where the workers run: the
parent, a process pool, or Dask in :mod:`.dask_executor`), :mod:`.runner` (the parent:
dispatch, record, watch, signals), :mod:`.summary` (summary, listings, progress).
"""

from leukofhir.batch.runner import BatchError, BatchOptions, BatchResult, run_batch

__all__ = ["BatchError", "BatchOptions", "BatchResult", "run_batch"]
