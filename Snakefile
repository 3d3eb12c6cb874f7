# aenet_core workflow: example data (optional) -> reference energies -> database -> split ->
# one training job per committee member -> aggregation, .nn.ascii export and evaluation.
from snakemake.utils import min_version

min_version("8.8")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


wildcard_constraints:
    run="[A-Za-z0-9_.-]+",
    member="[0-9]+",
    db="[0-9a-f]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/example.smk"
include: "workflow/rules/database.smk"
include: "workflow/rules/committee.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/evaluate.smk"


# Quick bookkeeping runs on the submitting host instead of queueing a job each.
localrules:
    all,
    example_data,
    split,
    aggregate,
    export,


# Not in dry runs: a CUDA run stops here, before any job, when the jobs' torch has no CUDA build.
onstart:
    check_cuda_torch()


rule all:
    default_target: True
    input:
        [path for run in RUNS for path in run_outputs(run)],
