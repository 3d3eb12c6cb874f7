# aenet_core workflow. The default config.yaml featurizes a built-in Cu-Au example;
# the training DAG (reference energies -> database -> split -> committee) grows here.
from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/example.smk"
include: "workflow/rules/featurize.smk"


rule all:
    input:
        expand("results/{run}/features.npz", run=RUNS),
    default_target: True
