rule reference_energies:
    input:
        db_sources,
    output:
        "results/databases/{db}/reference_energies.json",
    log:
        "results/databases/{db}/logs/reference_energies.log",
    conda:
        "../../envs/aenet_core.yaml"
    resources:
        **scheduler_resources("reference_energies"),
    params:
        args=reference_energy_args,
    shell:
        "python -m aenet_core.cli reference-energies {input:q} --output {output:q} {params.args} > {log:q} 2>&1"


rule build_database:
    input:
        sources=db_sources,
        reference_energies=rules.reference_energies.output[0],
    output:
        "results/databases/{db}/database.h5",
    log:
        "results/databases/{db}/logs/build_database.log",
    benchmark:
        "results/databases/{db}/benchmarks/build_database.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    threads: database_threads
    resources:
        **scheduler_resources("build_database"),
    params:
        args=database_args,
    shell:
        "OMP_NUM_THREADS={threads} python -m aenet_core.cli build-database {input.sources:q} --output {output:q} "
        "--reference-energies {input.reference_energies:q} {params.args} > {log:q} 2>&1"


rule split:
    input:
        database=run_database,
        base=base_split,
    output:
        "results/{run}/split.json",
    log:
        "results/{run}/logs/split.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=split_args,
    shell:
        "python -m aenet_core.cli split {input.database:q} --output {output:q} {params.args} > {log:q} 2>&1"
