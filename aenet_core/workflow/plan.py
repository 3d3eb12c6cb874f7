"""What a checked config asks for: its runs and their targets, which database each uses (runs with the same
sources, descriptor and reference energies share one), the committee members and their seeds, an
active-learning loop's explorations and label batches, and what each job asks a scheduler for."""
from __future__ import annotations

import hashlib
import json
import math

from aenet_core.committee.config import TorchCommitteeConfig, member_label
from aenet_core.workflow.config import matching_files
from aenet_core.workflow.targets import round_label, round_of, round_target, run_of, temperature_label

DATABASE_KEYS = ("descriptor", "reference_energies", "max_energy", "max_forces", "database")


class Plan:
    """A checked config (``aenet_core.workflow.config.check_config``) and what follows from it.  Methods take a
    target (a run or one of its rounds) or a run, as named."""

    def __init__(self, config: dict, example_data: str):
        self.config = config
        self.example_data = example_data  # the file the built-in example's structures are written to
        self.runs = sorted(config["runs"])
        # Globbed once: every job of an invocation sees the same files.
        self._sources = {run: self._find_sources(run) for run in self.runs}
        self._database_keys = {run: self._recipe_key(run) for run in self.runs}
        self.database_runs = {}  # database key -> the first run that uses it
        for run, key in self._database_keys.items():
            self.database_runs.setdefault(key, run)

    def run_config(self, target: str) -> dict:
        return self.config["runs"][run_of(target)]

    def loop(self, run: str) -> dict | None:
        """The run's active_learning section, None without a loop."""
        return self.run_config(run).get("active_learning")

    def stops_by_itself(self, run: str) -> bool:
        """Whether the run's loop has max_rounds (it stops when converged) rather than a fixed count of rounds."""
        return "max_rounds" in self.loop(run)

    def round_count(self, run: str) -> int:
        """The rounds after round 0: exactly (rounds) or at most (max_rounds)."""
        loop = self.loop(run)
        return loop["max_rounds"] if self.stops_by_itself(run) else loop["rounds"]

    def loop_end(self, run: str, verdict) -> tuple:
        """(the last round that trains, the round in which the loop stopped by itself or None).  ``verdict(k)``
        is round k's exploration verdict (``stopping.exploration_verdict``), asked in order from round 1, and
        only of a loop with max_rounds: a fixed count of rounds trains every round."""
        if not self.stops_by_itself(run):
            return self.round_count(run), None
        for k in range(1, self.round_count(run) + 1):
            if verdict(k)["stop"]:
                return k - 1, k
        return self.round_count(run), None

    def _round_numbers(self, run: str, last: int | None) -> range:
        return range((self.round_count(run) if last is None else last) + 1)

    def rounds(self, run: str, last: int | None = None) -> list:
        """The round labels ("00", "01", ...) of the run's loop up to ``last`` (default: every round)."""
        return [round_label(k) for k in self._round_numbers(run, last)]

    def targets(self, run: str, last: int | None = None) -> list:
        """The run itself, or the rounds of its loop up to ``last`` (default: every round)."""
        if self.loop(run) is None:
            return [run]
        return [round_target(run, k) for k in self._round_numbers(run, last)]

    # -- data
    def source_files(self, target: str) -> list:
        """The structure files of a target's run: the built-in example or the expanded globs."""
        return self._sources[run_of(target)]

    def database_key(self, target: str) -> str:
        """The name of results/databases/<key>/: a hash of the sources and the settings that shape the database."""
        return self._database_keys[run_of(target)]

    def _find_sources(self, run: str) -> list:
        sources = self.run_config(run)["sources"]
        return [self.example_data] if sources == "example" else matching_files(sources)

    def _recipe_key(self, run: str) -> str:
        c = self.run_config(run)
        recipe = {"sources": self._sources[run], **{key: c[key] for key in DATABASE_KEYS}}
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]

    def database_config(self, key: str) -> dict:
        return self.run_config(self.database_runs[key])

    def database_sources(self, key: str) -> list:
        return self.source_files(self.database_runs[key])

    def shard_rounds(self, target: str) -> list:
        """The rounds whose labelled shards a target trains on besides its run's database: 1..k for round k."""
        return [round_label(k) for k in range(1, (round_of(target) or 0) + 1)]

    # -- committee
    def committee(self, target: str) -> TorchCommitteeConfig:
        return TorchCommitteeConfig(**self.run_config(target)["committee"])

    def members(self, target: str) -> list:
        """The members' labels ("000", "001", ...), as their folders are named."""
        count = self.committee(target).num_members
        return [member_label(i, count) for i in range(count)]

    def member_seed(self, target: str, member: str) -> int:
        return self.committee(target).seeds(None)[int(member)]

    def uses_cuda(self, target: str) -> bool:
        return self.run_config(target)["device"].startswith("cuda")

    def member_gpus(self, target: str) -> int:
        """The GPUs a member's job asks for: gpus_per_member for a CUDA member, none for a CPU member."""
        return self.run_config(target)["gpus_per_member"] if self.uses_cuda(target) else 0

    def member_processes(self, target: str) -> int:
        """The processes that train a member, sharing each batch: one per GPU, one on the CPU."""
        return max(1, self.member_gpus(target))

    # -- active learning
    def explorations(self, run: str) -> list:
        """(starting structure, temperature) labels of a round's explorations, as the explore rule's wildcards."""
        loop = self.loop(run)
        return [(f"{seed:03d}", temperature_label(t)) for seed in range(loop["seeds"]) for t in loop["temperatures"]]

    def label_batches(self, run: str, n_selected: int) -> list:
        """The labelling batches of a round that selected ``n_selected`` frames (none for none)."""
        return [f"{b:03d}" for b in range(math.ceil(n_selected / self.loop(run)["label"]["batch_size"]))]

    # -- what jobs ask a scheduler for (config `cluster`; a local run ignores it)
    def resources(self, rule: str) -> dict:
        """A job's runtime and memory; an unset account or partition is "": the SLURM executor then takes the
        cluster's default partition (sinfo) and guesses the account from the user's recent jobs (sacct)."""
        cluster = self.config["cluster"]
        size = cluster["resources"][rule]
        return {
            "runtime": size["runtime"],
            "mem_mb": size["mem_mb"],
            "slurm_account": cluster.get("account") or "",
            "slurm_partition": cluster.get("partition") or "",
        }

    def member_partition(self, target: str) -> str:
        """A CUDA member's job goes to the GPU partition when one is named."""
        cluster = self.config["cluster"]
        chosen = cluster.get("gpu_partition") if self.uses_cuda(target) else None
        return chosen or cluster.get("partition") or ""

    def member_gpu_model(self, target: str) -> str:
        return (self.config["cluster"].get("gpu_model") or "") if self.uses_cuda(target) else ""
