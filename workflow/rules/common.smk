# Config validation and helpers shared by the rules.
import glob

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

RUNS = sorted(config["runs"])
EXAMPLE_DATA = "results/example_data/example.extxyz"


def run_sources(wildcards):
    """Structure files of a run: the built-in example or the expanded globs."""
    sources = config["runs"][wildcards.run]["sources"]
    if sources == "example":
        return [EXAMPLE_DATA]
    patterns = [sources] if isinstance(sources, str) else sources
    files = sorted({path for pattern in patterns for path in glob.glob(pattern)})
    if not files:
        raise ValueError(f"runs.{wildcards.run}.sources matches no file: {patterns}")
    return files


def descriptor_args(wildcards):
    d = config["runs"][wildcards.run]["descriptor"]
    return (
        f"--species {' '.join(d['species'])} --rad-order {d['rad_order']} --rad-cutoff {d['rad_cutoff']} "
        f"--ang-order {d['ang_order']} --ang-cutoff {d['ang_cutoff']} --min-cutoff {d['min_cutoff']}"
    )
