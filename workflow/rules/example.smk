rule example_data:
    output:
        EXAMPLE_DATA,
    log:
        "results/example_data/example_data.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=lambda wildcards: args.example_args(config["example_data"]),
    shell:
        "python -m aenet_core.cli example-data --output {output:q} {params.args} > {log:q} 2>&1"
