"""Which process of a multi-process launch this is, known before any process group exists."""

from __future__ import annotations

import os


def is_rank_zero() -> bool:
    """True unless a launcher (torchrun, SLURM, Lightning's own) marked this process as another rank.

    Rank 0 alone tracks runs, writes outputs and prepares the checkpoint folder; other ranks only train.
    """
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0
