rule reference_energies:
    input:
        db_sources,
    output:
        "results/databases/{db}/reference_energies.json",
    params:
        args=reference_energy_args,
    log:
        "results/databases/{db}/logs/reference_energies.log",
    conda:
        "../../envs/aenet_core.yaml"
    shell:
        "python -m aenet_core.cli reference-energies {input:q} --output {output:q} {params.args} > {log:q} 2>&1"


rule build_database:
    input:
        sources=db_sources,
        reference_energies=rules.reference_energies.output[0],
    output:
        "results/databases/{db}/database.h5",
    params:
        args=database_args,
    log:
        "results/databases/{db}/logs/build_database.log",
    benchmark:
        "results/databases/{db}/benchmarks/build_database.tsv"
    threads: database_threads
    conda:
        "../../envs/aenet_core.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m aenet_core.cli build-database {input.sources:q} --output {output:q} "
        "--reference-energies {input.reference_energies:q} {params.args} > {log:q} 2>&1"


rule split:
    input:
        run_database,
    output:
        "results/{run}/split.json",
    params:
        args=split_args,
    log:
        "results/{run}/logs/split.log",
    conda:
        "../../envs/aenet_core.yaml"
    shell:
        "python -m aenet_core.cli split {input:q} --output {output:q} {params.args} > {log:q} 2>&1"
