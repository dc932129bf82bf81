"""Which process of a multi-process launch this is, known before any process group exists, and how many
CPUs this process may use.

Training on several nodes (`pretrain.num_nodes` > 1) needs one process per device on every node,
started by a launcher rather than by Lightning (which only spawns the devices of its own node).
Lightning 2.x picks its cluster environment from what the launcher left in the environment:

- SLURM (`srun`, SLURM_NTASKS and SLURM_PROCID set; `--ntasks-per-node` = devices): SLURMEnvironment;
- torchrun (TORCHELASTIC_RUN_ID, RANK, LOCAL_RANK, GROUP_RANK, WORLD_SIZE, MASTER_ADDR/PORT):
  TorchElasticEnvironment, which checks WORLD_SIZE = num_nodes × devices itself;
- anything else, by hand: LightningEnvironment, which starts no process of its own once LOCAL_RANK is
  set, connects to MASTER_ADDR:MASTER_PORT (rank 0's host and a free port there) and takes its global
  rank as NODE_RANK (or GROUP_RANK) × devices + LOCAL_RANK and the world size as num_nodes × devices;
  it reads neither RANK nor WORLD_SIZE (`check_launch` compares WORLD_SIZE when it is set).

Without MASTER_ADDR it would wait for the other nodes on 127.0.0.1, without MASTER_PORT on a random
port: `check_launch` refuses such a start in one line instead of letting every node wait forever.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (taskset, a cgroup's cpuset, a test worker's pin), not the
    machine's count. Torch threads beyond it only contend: two stages on one core with two threads each ran
    20× slower than with one (OpenMP threads spin while they wait for each other)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: What a hand launch (LightningEnvironment) must set on every node for a multi-node run.
HAND_LAUNCH = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK")


class PeerLostError(ConnectionError):
    """Another rank of a multi-process run crashed, was killed or stopped answering.

    A ConnectionError (an OSError) because that is what it is to this rank, and so the stage reports it
    in one line like the other faults outside the code, with every previous output left in place.
    """


def is_rank_zero() -> bool:
    """True unless a launcher (torchrun, SLURM, Lightning's own) marked this process as another rank.

    Rank 0 alone tracks runs, writes outputs and prepares the checkpoint folder; other ranks only train.
    """
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name]) == 0
    return node_rank() == 0 and local_rank() == 0


def node_rank() -> int:
    """This machine's index: NODE_RANK, or torchrun's GROUP_RANK (Lightning reads them in this order)."""
    return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))


def local_rank() -> int:
    """This process's device index on its machine (SLURM_LOCALID under srun)."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))


def launcher(env: Mapping[str, str] | None = None) -> str | None:
    """"slurm", "torchrun" or "hand" when an outside launcher started this process, else None."""
    env = os.environ if env is None else env
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        return "slurm"
    if "TORCHELASTIC_RUN_ID" in env:
        return "torchrun"
    return "hand" if "LOCAL_RANK" in env else None


def check_launch(num_nodes: int, devices: int | str, env: Mapping[str, str] | None = None) -> None:
    """Refuse, in one line, a multi-node start that would hang: no launcher, a partial hand launch, or a
    WORLD_SIZE that disagrees with num_nodes × devices (each node would wait for ranks that never come)."""
    env = os.environ if env is None else env
    if num_nodes == 1 and "WORLD_SIZE" not in env:
        return
    kind = launcher(env)
    if kind is None and num_nodes > 1:
        raise ValueError(f"pretrain.num_nodes is {num_nodes}, but no launcher started this process: start one "
                         f"process per device on each node with torchrun or srun, or set {', '.join(HAND_LAUNCH)}")
    missing = [name for name in HAND_LAUNCH if name not in env and not (name == "NODE_RANK" and "GROUP_RANK" in env)]
    if kind == "hand" and num_nodes > 1 and missing:
        raise ValueError(f"pretrain.num_nodes is {num_nodes}: {', '.join(missing)} not set (every node needs "
                         f"{', '.join(HAND_LAUNCH)}; MASTER_ADDR/MASTER_PORT are rank 0's host and a free port)")
    expected = num_nodes * devices if isinstance(devices, int) else None  # "auto": Lightning counts them
    if kind in ("hand", "torchrun") and expected and int(env.get("WORLD_SIZE", expected)) != expected:
        raise ValueError(f"WORLD_SIZE={env['WORLD_SIZE']}, but pretrain.num_nodes × devices is "
                         f"{num_nodes} × {devices} = {expected}")
