rule evaluate:
    input:
        committee=rules.aggregate.output.metadata,
        models=finished_models,
        database=target_database,
        split=rules.split.output[0],
        exported=rules.export.output[0],
    output:
        summary="results/{target}/evaluation/summary.json",
        predictions="results/{target}/evaluation/predictions.csv",
        calibration="results/{target}/committee/calibration.json",
        parity=report(
            "results/{target}/evaluation/parity.png",
            caption="../report/parity.rst",
            category="Evaluation",
            labels={"run": "{target}", "figure": "parity"},
        ),
        stress_parity=report(
            "results/{target}/evaluation/stress_parity.png",
            caption="../report/stress_parity.rst",
            category="Evaluation",
            labels={"run": "{target}", "figure": "stress parity"},
        ),
        uncertainty=report(
            "results/{target}/evaluation/uncertainty.png",
            caption="../report/uncertainty.rst",
            category="Evaluation",
            labels={"run": "{target}", "figure": "uncertainty"},
        ),
        uncertain_table=report(
            "results/{target}/evaluation/most_uncertain.csv",
            caption="../report/most_uncertain.rst",
            category="Evaluation",
            labels={"run": "{target}", "figure": "most uncertain"},
        ),
        uncertain_structures="results/{target}/evaluation/most_uncertain.extxyz",
    log:
        "results/{target}/logs/evaluate.log",
    benchmark:
        "results/{target}/benchmarks/evaluate.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    resources:
        **plan.resources("evaluate"),
    params:
        args=target_args(args.evaluate_args),
        committee_dir=subpath(input.committee, parent=True),
        output_dir=subpath(output.summary, parent=True),
    shell:
        "python -m aenet_core.cli evaluate {params.committee_dir:q} --database {input.database:q} --split {input.split:q} "
        "--output-dir {params.output_dir:q} --title {wildcards.target:q} --lammps-models {input.exported:q} {params.args} "
        "> {log:q} 2>&1"
