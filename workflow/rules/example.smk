rule example_data:
    output:
        EXAMPLE_DATA,
    log:
        "results/example_data/example_data.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        n=config["example_data"]["n_structures"],
        seed=config["example_data"]["seed"],
    shell:
        "python -m aenet_core.cli example-data --output {output:q} --n-structures {params.n:q} "
        "--seed {params.seed:q} > {log:q} 2>&1"
