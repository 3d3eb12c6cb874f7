rule featurize:
    input:
        run_sources,
    output:
        "results/{run}/features.npz",
    params:
        descriptor=descriptor_args,
    log:
        "results/{run}/logs/featurize.log",
    benchmark:
        "results/{run}/benchmarks/featurize.tsv"
    threads: 2
    conda:
        "../../envs/aenet_core.yaml"
    shell:
        "OMP_NUM_THREADS={threads} aenet-core featurize {input} --output {output} {params.descriptor} > {log} 2>&1"
