# Active learning (runs.<run>.active_learning): round 0 is the run's usual pipeline as target
# <run>/round_00; round k >= 1 explores with round k-1's committee (one job per starting structure and
# temperature), selects frames, labels them (one job per batch), builds them into a database shard and
# trains, exports and evaluates target <run>/round_k on the run's database plus the shards of rounds
# 1..k. Every file of a round is written once: raising `rounds` adds rounds and touches none before.


rule exploration_seeds:
    input:
        unpack(seed_inputs),
    output:
        "results/{name}/active_learning/seeds.extxyz",
    log:
        "results/{name}/logs/exploration_seeds.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=seed_args,
        sources=lambda wildcards, input: (
            arguments("--files", *input.files)
            if "files" in input.keys()
            else arguments("--database", *input.database, "--split", *input.split)
        ),
    shell:
        "python -m aenet_core.cli exploration-seeds {params.sources} {params.args} --output {output:q} > {log:q} 2>&1"


rule explore:
    input:
        unpack(previous_committee),
        seeds=rules.exploration_seeds.output[0],
    output:
        trajectory="results/{name}/round_{round}/explore/seed_{seed}_{temperature}K.extxyz",
        summary="results/{name}/round_{round}/explore/seed_{seed}_{temperature}K.json",
    log:
        "results/{name}/round_{round}/logs/explore_seed_{seed}_{temperature}K.log",
    benchmark:
        "results/{name}/round_{round}/benchmarks/explore_seed_{seed}_{temperature}K.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    threads: 1
    resources:
        **scheduler_resources("explore"),
    params:
        args=explore_args,
        committee_dir=subpath(input.committee, parent=True),
    shell:
        "OMP_NUM_THREADS=1 python -m aenet_core.cli explore {params.committee_dir:q} --calibration {input.calibration:q} "
        "--seeds {input.seeds:q} --seed-index {wildcards.seed:q} --temperature {wildcards.temperature:q} {params.args} "
        "--output {output.trajectory:q} --summary {output.summary:q} > {log:q} 2>&1"


rule select:
    input:
        trajectories=exploration_files("trajectory"),
        database=labelled_database,
    output:
        candidates="results/{name}/round_{round}/candidates.extxyz",
        selected="results/{name}/round_{round}/selected.extxyz",
        report="results/{name}/round_{round}/selection.json",
    log:
        "results/{name}/round_{round}/logs/select.log",
    conda:
        "../../envs/aenet_core.yaml"
    threads: 1
    resources:
        **scheduler_resources("explore"),
    params:
        args=select_args,
    shell:
        "OMP_NUM_THREADS=1 python -m aenet_core.cli select {input.trajectories:q} --database {input.database:q} "
        "{params.args} --candidates {output.candidates:q} --selected {output.selected:q} "
        "--report {output.report:q} > {log:q} 2>&1"


# The labelling calculator and its keyword arguments, as a file the label jobs read (never through the shell).
rule calculator_settings:
    output:
        "results/{name}/active_learning/calculator.yaml",
    log:
        "results/{name}/logs/calculator_settings.log",
    params:
        text=calculator_settings_text,
    run:
        write_settings(output[0], params.text)


# The calculator runs here, in a job of its own (never in Snakemake's process). A batch killed midway
# keeps its finished calculations in its work folder and repeats only the others.
rule label:
    input:
        selected=rules.select.output.selected,
        settings=rules.calculator_settings.output[0],
    output:
        labelled="results/{name}/round_{round}/label/batch_{batch}.extxyz",
        report="results/{name}/round_{round}/label/batch_{batch}.json",
    log:
        "results/{name}/round_{round}/logs/label_batch_{batch}.log",
    benchmark:
        "results/{name}/round_{round}/benchmarks/label_batch_{batch}.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    threads: label_threads
    resources:
        **scheduler_resources("label"),
    params:
        args=label_args,
        workdir=lambda wildcards, output: str(Path(output.report).with_suffix(".work")),
    shell:
        "OMP_NUM_THREADS={threads} python -m aenet_core.cli label {input.selected:q} --batch {wildcards.batch:q} "
        "{params.args} --calculator-settings {input.settings:q} --workdir {params.workdir:q} "
        "--output {output.labelled:q} --report {output.report:q} > {log:q} 2>&1"


rule merge_labels:
    input:
        labelled=label_files("labelled"),
        reports=label_files("report"),
    output:
        labelled="results/{name}/round_{round}/labelled.extxyz",
        report="results/{name}/round_{round}/labelling.json",
    log:
        "results/{name}/round_{round}/logs/merge_labels.log",
    conda:
        "../../envs/aenet_core.yaml"
    shell:
        "python -m aenet_core.cli merge-labels {input.labelled:q} --reports {input.reports:q} "
        "--output {output.labelled:q} --report {output.report:q} > {log:q} 2>&1"


rule build_shard:
    input:
        labelled=rules.merge_labels.output.labelled,
        reference_energies=shard_references,
    output:
        "results/{name}/round_{round}/database.h5",
    log:
        "results/{name}/round_{round}/logs/build_shard.log",
    conda:
        "../../envs/aenet_core.yaml"
    resources:
        **scheduler_resources("build_database"),
    params:
        args=shard_args,
    shell:
        "OMP_NUM_THREADS=1 python -m aenet_core.cli build-database {input.labelled:q} --output {output:q} --allow-empty "
        "--reference-energies {input.reference_energies:q} {params.args} > {log:q} 2>&1"


rule round_summary:
    input:
        unpack(round_inputs),
    output:
        "results/{name}/round_{round}/summary.json",
    log:
        "results/{name}/round_{round}/logs/round_summary.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=round_summary_args,
    shell:
        "python -m aenet_core.cli round-summary --round {wildcards.round:q} --evaluation {input.evaluation:q} "
        "{params.args} --output {output:q} > {log:q} 2>&1"


rule active_learning_report:
    input:
        all_round_summaries,
    output:
        table=report(
            "results/{name}/active_learning/rounds.csv",
            caption="../report/active_learning.rst",
            category="Active learning",
            labels={"run": "{name}", "figure": "rounds table"},
        ),
        plot=report(
            "results/{name}/active_learning/rounds.png",
            caption="../report/active_learning.rst",
            category="Active learning",
            labels={"run": "{name}", "figure": "rounds"},
        ),
    log:
        "results/{name}/logs/active_learning_report.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=report_args,
    shell:
        "python -m aenet_core.cli active-learning-report {input:q} {params.args} --table {output.table:q} "
        "--plot {output.plot:q} --title {wildcards.name:q} > {log:q} 2>&1"
