# aenet_core workflow: example data (optional) -> reference energies -> database -> split ->
# one training job per committee member -> aggregation, .nn.ascii export and evaluation; with active
# learning, rounds of exploration (one job per start and temperature), selection, labelling (one job
# per batch) and retraining on the database shards labelled so far.
from snakemake.utils import min_version

min_version("8.8")


# The shipped example run; a config of one's own (--configfile mine.yaml) replaces it instead of adding to it.
if not workflow.config_settings.configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


from aenet_core.workflow.targets import ROUND_NUMBER, RUN_NAME, TARGET_NAME, TEMPERATURE


# target: a run, or a round of its active-learning loop (<run>/round_NN); run: a run.
wildcard_constraints:
    target=TARGET_NAME,
    run=RUN_NAME,
    round=ROUND_NUMBER,
    seed="[0-9]+",
    temperature=TEMPERATURE,
    batch="[0-9]+",
    member="[0-9]+",
    db="[0-9a-f]+",


include: "workflow/rules/common.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/example.smk"
include: "workflow/rules/database.smk"
include: "workflow/rules/committee.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/active_learning.smk"


# Quick bookkeeping runs on the submitting host instead of queueing a job each.
localrules:
    all,
    example_data,
    split,
    member_settings,
    calculator_settings,
    aggregate,
    export,
    exploration_seeds,
    merge_labels,
    round_summary,
    active_learning_report,


# Not in dry runs: a CUDA run whose jobs' torch has no CUDA build, structure files holding species the
# descriptor lacks, or seed files the database would refuse, stop here, before any job; then the lists of
# structure files the database builds read are written.
onstart:
    check_cuda_torch()
    check_source_species()
    check_seed_files()
    write_source_lists()


onsuccess:
    print_summary()


onerror:
    print_failures()


rule all:
    default_target: True
    input:
        lambda wildcards: [path for run in RUNS for path in run_outputs(run)],
