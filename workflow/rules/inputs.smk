# The rules' input functions (wildcards -> paths, arguments, settings), one section per rule file in the order
# the Snakefile includes them. They live here, not beside their rules, because Snakemake's linter flags a file
# that mixes rules and functions; what they decide with is aenet_core.workflow (``plan``, ``args``).


# -- shared -------------------------------------------------------------------------------------------
def target_setting(key):
    """Input function: the ``key`` setting of the target's run."""
    return lambda wildcards: plan.run_config(wildcards.target)[key]


def target_args(build):
    """Input function: ``build(run config)``, the arguments of the target's run."""
    return lambda wildcards: build(plan.run_config(wildcards.target))


# -- Snakefile (rule all) -----------------------------------------------------------------------------
def run_outputs(run):
    """What the default target asks for, per run: its committee, export and evaluation, or those of every round
    its active-learning loop trains with the round summaries and the run's table."""
    outputs = (rules.aggregate.output.metadata, rules.export.output[0], rules.evaluate.output.summary)
    if plan.loop(run) is None:
        return expand(outputs, target=run)
    last, _ = loop_end(run)
    check_labels(run, plan.rounds(run, last)[1:])
    targets = expand(outputs, target=plan.targets(run, last))
    return [*targets, *round_summaries(run), *expand(rules.active_learning_report.output, run=run)]


# -- database.smk ----------------------------------------------------------------------------------
def database_setting(build):
    """Input function: ``build(run config)`` for the database's first run."""
    return lambda wildcards: build(plan.database_config(wildcards.db))


def target_database(wildcards):
    """The databases a target trains on: its run's, then the shards of its loop's rounds so far."""
    base = expand(rules.build_database.output[0], db=plan.database_key(wildcards.target))
    rounds = plan.shard_rounds(wildcards.target)
    return base + expand(rules.build_shard.output[0], run=run_of(wildcards.target), round=rounds)


def base_split(wildcards):
    """Rounds after round 0 keep round 0's split and train on every labelled frame."""
    if not round_of(wildcards.target):
        return []
    return expand(rules.split.output[0], target=round_target(run_of(wildcards.target), 0))


def split_args(wildcards):
    if round_of(wildcards.target):
        return args.arguments("--extend", *base_split(wildcards))
    return args.split_args(plan.run_config(wildcards.target))


# -- committee.smk ---------------------------------------------------------------------------------
def member_files(name):
    """Input function: the ``name`` output of every member of the target's committee."""

    def files(wildcards):
        pattern = getattr(rules.train_member.output, name)
        return expand(pattern, target=wildcards.target, member=plan.members(wildcards.target))

    return files


def member_processes(wildcards, threads):
    """A member's --nproc and --threads. A param that takes threads is derived, which the params rerun trigger
    leaves out: how many processes train a member does not change its weights."""
    return args.member_process_args(plan.member_processes(wildcards.target), threads)


def warm_start_model(wildcards):
    """With active_learning.warm_start, a member of round k >= 1 starts from the same member of round k-1."""
    k = round_of(wildcards.target)
    if not k or not plan.run_config(wildcards.target)["active_learning"]["warm_start"]:
        return []
    previous = round_target(run_of(wildcards.target), k - 1)
    return expand(rules.train_member.output.model, target=previous, member=wildcards.member)


def member_resources():
    """A member's job: only a CUDA member asks for GPUs (gpus_per_member), the GPU model and the GPU partition."""
    return plan.resources("train_member") | {
        "slurm_partition": lambda wildcards: plan.member_partition(wildcards.target),
        "gpu": lambda wildcards: plan.member_gpus(wildcards.target),
        "gpu_model": lambda wildcards: plan.member_gpu_model(wildcards.target),
    }


# -- active_learning.smk ---------------------------------------------------------------------------
def exploration_verdict(run, k):
    """Whether a loop with max_rounds stops in round ``k``: read from the round's selection, a checkpoint (until
    it has run, Snakemake schedules it and asks again)."""
    selection = checkpoints.select.get(run=run, round=round_label(k)).output.report
    return stopping.exploration_verdict(read_json(selection, "selection report"), plan.loop(run)["converged_fraction"])


def loop_end(run):
    """(the last round that trains, the round in which the loop stopped by itself or None)."""
    return plan.loop_end(run, lambda k: exploration_verdict(run, k))


def round_summaries(run):
    """The summary of every round that trained, and of the round where the loop stopped."""
    last, stopped = loop_end(run)
    rounds = plan.rounds(run, last) + ([] if stopped is None else [round_label(stopped)])
    return expand(rules.round_summary.output[0], run=run, round=rounds)


def loop_setting(build):
    """Input function: ``build(active_learning section)`` of the run."""
    return lambda wildcards: build(plan.loop(wildcards.run))


def previous_target(wildcards):
    return round_target(wildcards.run, int(wildcards.round) - 1)


def seed_inputs(wildcards):
    """The loop's seed_files, or round 0's training structures."""
    files = plan.loop(wildcards.run).get("seed_files")
    if files is not None:
        return {"files": matching_files(files)}
    first = round_target(wildcards.run, 0)
    return {
        "database": target_database(SimpleNamespace(target=first)),
        "split": expand(rules.split.output[0], target=first),
    }


def limit_args(build):
    """Params function: ``build(run config)``, the plausibility limits a loop step applies (the run's database
    section). Other limits are another database (its key hashes them), which reruns the step anyway; taking
    ``input`` keeps them out of Snakemake's params rerun trigger, so that rounds made before a check existed
    are kept."""
    return lambda wildcards, input: build(plan.run_config(wildcards.run))


def seed_sources(wildcards, input):
    if "files" in input.keys():
        return args.arguments("--files", *input.files)
    return args.arguments("--database", *input.database, "--split", *input.split)


def previous_committee(wildcards):
    """The committee a round explores with: round k-1's members (checked as the evaluation checks them)
    and its calibration."""
    previous = SimpleNamespace(target=previous_target(wildcards))
    return {
        "committee": expand(rules.aggregate.output.metadata, target=previous.target)[0],
        "models": finished_models(previous),
        "calibration": expand(rules.evaluate.output.calibration, target=previous.target)[0],
        **previous_evaluation(wildcards),
    }


def previous_evaluation(wildcards):
    """The previous round's evaluation summary, which trust levels on another scale than eV/Å are read from."""
    if plan.loop(wildcards.run)["trust_scale"] == "absolute":
        return {}
    return {"evaluation": expand(rules.evaluate.output.summary, target=previous_target(wildcards))[0]}


# The argument functions below take no ``input``: Snakemake leaves params derived from the input out of its
# params rerun trigger, and a changed MD or selection setting must rerun the round.
def evaluation_path(wildcards):
    return previous_evaluation(wildcards).get("evaluation")


def select_inputs(wildcards):
    return {
        "trajectories": exploration_files("trajectory")(wildcards),
        "database": labelled_database(wildcards),
        **previous_evaluation(wildcards),
    }


def select_args(wildcards):
    return args.select_args(plan.loop(wildcards.run), evaluation_path(wildcards))


def exploration_files(kind):
    def files(wildcards):
        pattern = getattr(rules.explore.output, kind)
        return [
            expand(pattern, run=wildcards.run, round=wildcards.round, seed=s, temperature=t)[0]
            for s, t in plan.explorations(wildcards.run)
        ]

    return files


def explore_args(wildcards):
    loop = plan.loop(wildcards.run)
    return args.explore_args(loop, wildcards.round, wildcards.seed, wildcards.temperature, evaluation_path(wildcards))


def labelled_database(wildcards):
    """What is labelled before a round's selection: the previous round's training data, every shard."""
    return target_database(SimpleNamespace(target=previous_target(wildcards)))


def merge_labels_args(wildcards, input):
    """max_failed_fraction gates a merge without changing what it writes: taking ``input`` keeps it out of
    Snakemake's params rerun trigger, so a changed limit reruns only a merge that has not passed yet."""
    return args.merge_labels_args(plan.loop(wildcards.run))


def label_files(kind):
    """A round's labelling batches, as many as its selection (a checkpoint) needs."""

    def files(wildcards):
        selection = checkpoints.select.get(**wildcards).output.report
        merged = expand(rules.merge_labels.output.report, **wildcards)[0]
        if os.path.exists(merged):  # the batches it merged (before this version, as many as max_frames asked)
            reports = Path(merged).parent.glob("label/batch_*.json")
            batches = sorted(path.stem.removeprefix("batch_") for path in reports)
        else:
            n_selected = read_json(selection, "selection report")["n_selected"]
            batches = plan.label_batches(wildcards.run, n_selected)
        pattern = getattr(rules.label.output, kind)
        return expand(pattern, run=wildcards.run, round=wildcards.round, batch=batches)

    return files


def round_trains(wildcards):
    """Whether a round labels and trains: every round of a fixed count, else those before the loop stopped."""
    k = int(wildcards.round)
    return not k or not plan.stops_by_itself(wildcards.run) or not exploration_verdict(wildcards.run, k)["stop"]


def round_inputs(wildcards):
    """A round's reports: its exploration and selection (after round 0), its labelling and evaluation (a round
    that trains)."""
    k, trains, inputs = int(wildcards.round), round_trains(wildcards), {}
    if trains:
        inputs["evaluation"] = expand(rules.evaluate.output.summary, target=round_target(wildcards.run, k))[0]
    if k:
        inputs["explorations"] = exploration_files("summary")(wildcards)
        inputs["selection"] = expand(rules.select.output.report, **wildcards)[0]
    if k and trains:
        inputs["labelling"] = expand(rules.merge_labels.output.report, **wildcards)[0]
    return inputs


def round_summary_args(wildcards):
    """The round's reports (round_inputs); a loop that stops by itself also passes its converged_fraction."""
    reports = round_inputs(wildcards)
    tokens = [
        *args.option("--evaluation", reports.get("evaluation")),
        *(["--explorations", *reports["explorations"]] if "explorations" in reports else []),
        *args.option("--selection", reports.get("selection")),
        *args.option("--labelling", reports.get("labelling")),
    ]
    if plan.stops_by_itself(wildcards.run):
        tokens += ["--converged-fraction", plan.loop(wildcards.run)["converged_fraction"]]
    return args.arguments(*tokens)
