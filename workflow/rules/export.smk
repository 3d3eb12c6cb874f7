# The whole ascii/ folder is the output: Snakemake empties it before the job, so a smaller committee
# leaves no stale member folders behind.
rule export:
    input:
        metadata=rules.aggregate.output.metadata,
        models=finished_models,
    output:
        directory("results/{target}/ascii"),
    log:
        "results/{target}/logs/export.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=target_args(args.export_args),
    shell:
        "python -m aenet_core.cli export {input.metadata:q} --output-dir {output:q} {params.args} > {log:q} 2>&1"
