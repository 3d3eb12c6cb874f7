rule export:
    input:
        "results/{run}/committee/committee_metadata.json",
    output:
        "results/{run}/ascii/manifest.json",
    params:
        prefix=export_prefix,
        output_dir=subpath(output[0], parent=True),
    log:
        "results/{run}/logs/export.log",
    conda:
        "../../envs/aenet_core.yaml"
    shell:
        "python -m aenet_core.cli export {input:q} --output-dir {params.output_dir:q} --prefix {params.prefix} > {log:q} 2>&1"
