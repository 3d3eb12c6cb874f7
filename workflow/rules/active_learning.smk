# Active learning (runs.<run>.active_learning): round 0 is the run's usual pipeline as target
# <run>/round_00; round k >= 1 explores with round k-1's committee (one job per starting structure and
# temperature), selects frames, labels them (one job per batch), builds them into a database shard and
# trains, exports and evaluates target <run>/round_k on the run's database plus the shards of rounds
# 1..k. Every file of a round is written once: raising `rounds` adds rounds and touches none before. With
# max_rounds, the loop stops by itself in the first round whose exploration finds the committee accurate
# (stopping.py): that round explores and selects only; raising max_rounds then adds nothing.
rule exploration_seeds:
    input:
        unpack(seed_inputs),
    output:
        "results/{run}/active_learning/seeds.extxyz",
    log:
        "results/{run}/logs/exploration_seeds.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=loop_setting(args.exploration_seed_args),
        limits=limit_args(args.seed_limit_args),
        sources=seed_sources,
    shell:
        "python -m aenet_core.cli exploration-seeds {params.sources} {params.args} {params.limits} --output {output:q} "
        "> {log:q} 2>&1"


rule explore:
    input:
        unpack(previous_committee),
        seeds=rules.exploration_seeds.output[0],
    output:
        trajectory="results/{run}/round_{round}/explore/seed_{seed}_{temperature}K.extxyz",
        summary="results/{run}/round_{round}/explore/seed_{seed}_{temperature}K.json",
    log:
        "results/{run}/round_{round}/logs/explore_seed_{seed}_{temperature}K.log",
    benchmark:
        "results/{run}/round_{round}/benchmarks/explore_seed_{seed}_{temperature}K.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    threads: loop_setting(lambda loop: loop["threads"])
    resources:
        **plan.resources("explore"),
    params:
        args=explore_args,
        committee_dir=subpath(input.committee, parent=True),
    shell:
        "OMP_NUM_THREADS=1 python -m aenet_core.cli explore {params.committee_dir:q} --calibration {input.calibration:q} "
        "--seeds {input.seeds:q} --seed-index {wildcards.seed:q} --temperature {wildcards.temperature:q} {params.args} "
        "--output {output.trajectory:q} --summary {output.summary:q} > {log:q} 2>&1"


# A checkpoint: a loop with max_rounds decides from the selection whether the round trains (stopping.py).
checkpoint select:
    input:
        unpack(select_inputs),
    output:
        candidates="results/{run}/round_{round}/candidates.extxyz",
        selected="results/{run}/round_{round}/selected.extxyz",
        report="results/{run}/round_{round}/selection.json",
    log:
        "results/{run}/round_{round}/logs/select.log",
    conda:
        "../../envs/aenet_core.yaml"
    threads: 1
    resources:
        **plan.resources("explore"),
    params:
        args=select_args,
        limits=limit_args(args.select_limit_args),
    shell:
        "OMP_NUM_THREADS=1 python -m aenet_core.cli select {input.trajectories:q} --database {input.database:q} "
        "{params.args} {params.limits} --candidates {output.candidates:q} --selected {output.selected:q} "
        "--report {output.report:q} > {log:q} 2>&1"


# The labelling calculator and its keyword arguments, as a file the label jobs read (never through the shell).
rule calculator_settings:
    output:
        "results/{run}/active_learning/calculator.yaml",
    log:
        "results/{run}/logs/calculator_settings.log",
    params:
        text=lambda wildcards: args.calculator_settings_text(wildcards.run, plan.loop(wildcards.run)),
    run:
        write_settings(output[0], params.text)


# The calculator runs here, in a job of its own (never in Snakemake's process). A batch killed midway
# keeps its finished calculations in its work folder and repeats only the others.
rule label:
    input:
        selected=rules.select.output.selected,
        settings=rules.calculator_settings.output[0],
    output:
        labelled="results/{run}/round_{round}/label/batch_{batch}.extxyz",
        report="results/{run}/round_{round}/label/batch_{batch}.json",
    log:
        "results/{run}/round_{round}/logs/label_batch_{batch}.log",
    benchmark:
        "results/{run}/round_{round}/benchmarks/label_batch_{batch}.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    threads: loop_setting(lambda loop: loop["label"]["threads"])
    resources:
        **plan.resources("label"),
    params:
        args=loop_setting(args.label_args),
        limits=limit_args(args.label_limit_args),
        workdir=lambda wildcards, output: str(Path(output.report).with_suffix(".work")),
    shell:
        "OMP_NUM_THREADS={threads} python -m aenet_core.cli label {input.selected:q} --batch {wildcards.batch:q} "
        "{params.args} {params.limits} --calculator-settings {input.settings:q} --workdir {params.workdir:q} "
        "--output {output.labelled:q} --report {output.report:q} > {log:q} 2>&1"


rule merge_labels:
    input:
        labelled=label_files("labelled"),
        reports=label_files("report"),
    output:
        labelled="results/{run}/round_{round}/labelled.extxyz",
        report="results/{run}/round_{round}/labelling.json",
    log:
        "results/{run}/round_{round}/logs/merge_labels.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=merge_labels_args,
    shell:
        "python -m aenet_core.cli merge-labels {input.labelled:q} --reports {input.reports:q} {params.args} "
        "--output {output.labelled:q} --report {output.report:q} > {log:q} 2>&1"


rule build_shard:
    input:
        labelled=rules.merge_labels.output.labelled,
        # every shard is measured against the run's reference energies
        reference_energies=lambda wildcards: expand(
            rules.reference_energies.output[0], db=plan.database_key(wildcards.run)
        ),
    output:
        "results/{run}/round_{round}/database.h5",
    log:
        "results/{run}/round_{round}/logs/build_shard.log",
    conda:
        "../../envs/aenet_core.yaml"
    resources:
        **plan.resources("build_database"),
    params:
        args=lambda wildcards: args.database_args(plan.run_config(wildcards.run)),
    shell:
        "OMP_NUM_THREADS=1 python -m aenet_core.cli build-database {input.labelled:q} --output {output:q} --allow-empty "
        "--reference-energies {input.reference_energies:q} {params.args} > {log:q} 2>&1"


rule round_summary:
    input:
        unpack(round_inputs),
    output:
        "results/{run}/round_{round}/summary.json",
    log:
        "results/{run}/round_{round}/logs/round_summary.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=round_summary_args,
    shell:
        "python -m aenet_core.cli round-summary --round {wildcards.round:q} {params.args} --output {output:q} "
        "> {log:q} 2>&1"


rule active_learning_report:
    input:
        lambda wildcards: round_summaries(wildcards.run),
    output:
        table=report(
            "results/{run}/active_learning/rounds.csv",
            caption="../report/active_learning.rst",
            category="Active learning",
            labels={"run": "{run}", "figure": "rounds table"},
        ),
        plot=report(
            "results/{run}/active_learning/rounds.png",
            caption="../report/active_learning.rst",
            category="Active learning",
            labels={"run": "{run}", "figure": "rounds"},
        ),
    log:
        "results/{run}/logs/active_learning_report.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=loop_setting(args.report_args),
    shell:
        "python -m aenet_core.cli active-learning-report {input:q} {params.args} --table {output.table:q} "
        "--plot {output.plot:q} --title {wildcards.run:q} > {log:q} 2>&1"
