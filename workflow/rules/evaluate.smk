rule evaluate:
    input:
        committee=rules.aggregate.output.metadata,
        models=finished_models,
        database=run_database,
        split=rules.split.output[0],
        exported=rules.export.output[0],
    output:
        summary="results/{run}/evaluation/summary.json",
        predictions="results/{run}/evaluation/predictions.csv",
        calibration="results/{run}/committee/calibration.json",
        parity=report(
            "results/{run}/evaluation/parity.png",
            caption="../report/parity.rst",
            category="Evaluation",
            labels={"run": "{run}", "figure": "parity"},
        ),
        stress_parity=report(
            "results/{run}/evaluation/stress_parity.png",
            caption="../report/stress_parity.rst",
            category="Evaluation",
            labels={"run": "{run}", "figure": "stress parity"},
        ),
        uncertainty=report(
            "results/{run}/evaluation/uncertainty.png",
            caption="../report/uncertainty.rst",
            category="Evaluation",
            labels={"run": "{run}", "figure": "uncertainty"},
        ),
        uncertain_table=report(
            "results/{run}/evaluation/most_uncertain.csv",
            caption="../report/most_uncertain.rst",
            category="Evaluation",
            labels={"run": "{run}", "figure": "most uncertain"},
        ),
        uncertain_structures="results/{run}/evaluation/most_uncertain.extxyz",
    log:
        "results/{run}/logs/evaluate.log",
    benchmark:
        "results/{run}/benchmarks/evaluate.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    resources:
        **scheduler_resources("evaluate"),
    params:
        args=evaluate_args,
        committee_dir=subpath(input.committee, parent=True),
        output_dir=subpath(output.summary, parent=True),
    shell:
        "python -m aenet_core.cli evaluate {params.committee_dir:q} --database {input.database:q} --split {input.split:q} "
        "--output-dir {params.output_dir:q} --title {wildcards.run:q} --lammps-models {input.exported:q} {params.args} "
        "> {log:q} 2>&1"
