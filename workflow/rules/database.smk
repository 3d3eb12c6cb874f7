# One database per recipe (results/databases/<key>/, plan.database_key), shared by the runs that ask for it;
# a target trains on its run's database and, in round k of a loop, the shards labelled in rounds 1..k.
# The commands read the sources from results/databases/<key>/sources.txt, which the workflow writes before
# any job (write_source_lists): a command line holds a few thousand file names at most. The files stay the
# inputs, so that a changed file rebuilds the database (other files are another key).
rule reference_energies:
    input:
        lambda wildcards: plan.database_sources(wildcards.db),
    output:
        "results/databases/{db}/reference_energies.json",
    log:
        "results/databases/{db}/logs/reference_energies.log",
    conda:
        "../../envs/aenet_core.yaml"
    resources:
        **plan.resources("reference_energies"),
    params:
        args=database_setting(args.reference_energy_args),
    shell:
        "python -m aenet_core.cli reference-energies --sources-from results/databases/{wildcards.db}/sources.txt "
        "--output {output:q} {params.args} > {log:q} 2>&1"


rule build_database:
    input:
        sources=lambda wildcards: plan.database_sources(wildcards.db),
        reference_energies=rules.reference_energies.output[0],
    output:
        "results/databases/{db}/database.h5",
    log:
        "results/databases/{db}/logs/build_database.log",
    benchmark:
        "results/databases/{db}/benchmarks/build_database.tsv"
    conda:
        "../../envs/aenet_core.yaml"
    threads: database_setting(lambda c: c["threads"])
    resources:
        **plan.resources("build_database"),
    params:
        args=database_setting(args.database_args),
    shell:
        "OMP_NUM_THREADS={threads} python -m aenet_core.cli build-database "
        "--sources-from results/databases/{wildcards.db}/sources.txt --output {output:q} "
        "--reference-energies {input.reference_energies:q} {params.args} > {log:q} 2>&1"


rule split:
    input:
        database=target_database,
        base=base_split,
    output:
        "results/{target}/split.json",
    log:
        "results/{target}/logs/split.log",
    conda:
        "../../envs/aenet_core.yaml"
    params:
        args=split_args,
    shell:
        "python -m aenet_core.cli split {input.database:q} --output {output:q} {params.args} > {log:q} 2>&1"
