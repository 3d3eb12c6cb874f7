# The members' architecture and training settings, as a file they read (and a record of what they trained
# with): rewritten, and every member retrained, only when a setting changes (its text is the param).
rule member_settings:
    output:
        "results/{target}/committee/settings.yaml",
    log:
        "results/{target}/logs/member_settings.log",
    params:
        text=lambda wildcards: args.member_settings_text(wildcards.target, plan.run_config(wildcards.target)),
    run:
        write_settings(output[0], params.text)


rule train_member:
    input:
        database=target_database,
        split=rules.split.output[0],
        settings=rules.member_settings.output[0],
        initial=warm_start_model,
    output:
        model="results/{target}/committee/member_{member}/model.pt",
        history_json="results/{target}/committee/member_{member}/history.json",
        history_csv="results/{target}/committee/member_{member}/history.csv",
        summary="results/{target}/committee/member_{member}/summary.json",
    log:
        "results/{target}/logs/train_member_{member}.log",
    benchmark:
        "results/{target}/benchmarks/train_member_{member}.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    threads: target_setting("threads")
    resources:
        **member_resources(),
    params:
        seed=lambda wildcards: plan.member_seed(wildcards.target, wildcards.member),
        device=target_setting("device"),
        member_dir=subpath(output.summary, parent=True),
        initial=lambda wildcards, input: args.arguments("--initial-model", *input.initial) if input.initial else "",
        processes=member_processes,
    shell:
        "OMP_NUM_THREADS={threads} python -m aenet_core.cli train-member --database {input.database:q} "
        "--split {input.split:q} --settings {input.settings:q} "
        "--member-index {wildcards.member:q} --seed {params.seed:q} --device {params.device:q} {params.processes} "
        "{params.initial} --output-dir {params.member_dir:q} > {log:q} 2>&1"


rule aggregate:
    input:
        member_files("summary"),
    output:
        metadata="results/{target}/committee/committee_metadata.json",
        table=report(
            "results/{target}/committee/members.csv",
            caption="../report/members.rst",
            category="Committee",
            labels={"run": "{target}", "figure": "members"},
        ),
        curves=report(
            "results/{target}/committee/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Committee",
            labels={"run": "{target}", "figure": "learning curves"},
        ),
    log:
        "results/{target}/logs/aggregate.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        committee_dir=subpath(output.metadata, parent=True),
        members=lambda wildcards: [str(Path(path).parent) for path in member_files("summary")(wildcards)],
    shell:
        "python -m aenet_core.cli aggregate {params.committee_dir:q} --members {params.members:q} "
        "--table {output.table:q} --plot {output.curves:q} --title {wildcards.target:q} > {log:q} 2>&1"
