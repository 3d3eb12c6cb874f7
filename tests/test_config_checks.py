"""A bad config stops the workflow before its first job (a dry run already fails), naming the key and
what was expected; the schema's ranges are the library's rules.  The checks are called directly
(aenet_core.workflow.config); two dry runs show that the Snakefile makes them."""
import sys

import pytest
import yaml
from workflow_setup import ROOT, SCHEMA, default_config, shipped_config, snakemake

from aenet_core.rules import DEFAULT_MIN_CUTOFF, ORDER, SEED
from aenet_core.workflow.config import ConfigError, check_config



MEMBERS = shipped_config()["runs"]["example"]["committee"]["num_members"]


def run(config):
    return config["runs"]["example"]


def descriptor(config):
    return run(config)["descriptor"]


def method(config):
    return run(config)["training"]["method"]


CASES = {
    "misspelt optimizer parameter": (lambda c: method(c).update(muu=0.1),
                                     "runs.example.training.method: Additional properties are not allowed ('muu' "
                                     "was unexpected); did you mean mu?"),
    "unknown optimizer parameter": (lambda c: method(c).update(gamma=0.1),
                                    "runs.example.training.method: Additional properties are not allowed ('gamma' "
                                    "was unexpected); expected one of name, mu, batchsize"),
    "negative base_seed": (lambda c: run(c)["committee"].update(base_seed=-1),
                           "runs.example.committee.base_seed: -1 is less than the minimum of 0"),
    "negative member seed": (lambda c: run(c)["committee"].update(member_seeds=[3, -1]),
                             "runs.example.committee.member_seeds[1]: -1 is less than the minimum of 0"),
    "negative split_seed": (lambda c: run(c)["split"].update(split_seed=-1),
                            "runs.example.split.split_seed: -1 is less than the minimum of 0"),
    "negative example seed": (lambda c: c["example_data"].update(seed=-1),
                              "example_data.seed: -1 is less than the minimum of 0"),
    "base_seed past numpy's": (lambda c: run(c)["committee"].update(base_seed=SEED.high + 1),
                               f"runs.example.committee.base_seed: {SEED.high + 1} is greater than the maximum"),
    "last member seed past numpy's": (lambda c: run(c)["committee"].update(base_seed=SEED.high),
                                      f"runs.example.committee.base_seed: the last member's seed, "
                                      f"{SEED.high + MEMBERS - 1}, "
                                      f"must be at most {SEED.high}"),
    "force_fraction not a number": (lambda c: run(c)["training"].update(force_fraction="abc"),
                                    "runs.example.training.force_fraction: 'abc' is not of type 'number'"),
    "negative checkpoint_interval": (lambda c: run(c)["training"].update(checkpoint_interval=-1),
                                     "runs.example.training.checkpoint_interval: -1 is less than the minimum of 0"),
    "batchsize 0": (lambda c: method(c).update(batchsize=0),
                    "runs.example.training.method.batchsize: 0 is less than the minimum of 1"),
    "negative mu": (lambda c: method(c).update(mu=-0.1),
                    "runs.example.training.method.mu: -0.1 is less than or equal to the minimum of 0"),
    "mu nan": (lambda c: method(c).update(mu=float("nan")), "runs.example.training.method.mu: must be a finite number"),
    "architecture misses a species": (lambda c: run(c).update(architecture={"Cu": [[5, "tanh"]]}),
                                      "runs.example.architecture: layers for Cu; expected descriptor.species (Cu, Au)"),
    "architecture names another species": (
        lambda c: run(c).update(architecture={s: [[5, "tanh"]] for s in ("Cu", "Au", "Ag")}),
        "runs.example.architecture: layers for Ag, Au, Cu; expected descriptor.species (Cu, Au)"),
    "rad_cutoff == min_cutoff": (lambda c: descriptor(c).update(rad_cutoff=0.5, min_cutoff=0.5),
                                 "runs.example.descriptor.rad_cutoff must be above min_cutoff (0.5 Å); got 0.5"),
    "rad_cutoff < the default min_cutoff": (
        lambda c: (descriptor(c).pop("min_cutoff"), descriptor(c).update(rad_cutoff=DEFAULT_MIN_CUTOFF / 2)),
        f"runs.example.descriptor.rad_cutoff must be above min_cutoff ({DEFAULT_MIN_CUTOFF} Å, the descriptor's "
        f"default); got {DEFAULT_MIN_CUTOFF / 2}"),
    "ang_cutoff < min_cutoff": (lambda c: descriptor(c).update(ang_cutoff=0.4, min_cutoff=0.5),
                                "runs.example.descriptor.ang_cutoff must be above min_cutoff (0.5 Å); got 0.4"),
    "ang_cutoff == min_cutoff": (lambda c: descriptor(c).update(ang_cutoff=0.5, min_cutoff=0.5),
                                 "runs.example.descriptor.ang_cutoff must be above min_cutoff (0.5 Å); got 0.5"),
    "species not an element": (lambda c: descriptor(c).update(species=["Cu", "Zz"]),
                               "runs.example.descriptor.species: 'Zz' is not a chemical element"),
    "fixed value of no element": (
        lambda c: run(c).update(reference_energies={"method": "fixed", "values": {"Cu": 1.0, "Zz": 2.0}}),
        "runs.example.reference_energies.values: Zz is not one of descriptor.species (Cu, Au)"),
    "held-fixed energy of another species": (lambda c: run(c).update(reference_energies={"fixed": {"Ag": 1.0}}),
                                             "runs.example.reference_energies.fixed: Ag is not one of "
                                             "descriptor.species (Cu, Au)"),
    "compound of no element": (
        lambda c: run(c).update(reference_energies={"method": "reference_compounds", "compounds": ["Cu", "CuZz"]}),
        "runs.example.reference_energies.compounds[1]: Zz is not one of descriptor.species (Cu, Au)"),
    "early stopping without a test split": (
        lambda c: (run(c)["training"].update(early_stopping_patience=3), run(c)["split"].update(testpercent=0)),
        "runs.example.training.early_stopping_patience needs validation structures; split.testpercent is 0"),
    "a schedule without use_scheduler": (
        lambda c: run(c)["training"].update(scheduler="cosine"),
        "runs.example.training: TorchTrainingConfig.scheduler='cosine' takes effect only with"),
    "a warm-up without an epoch schedule": (
        lambda c: run(c)["training"].update(use_scheduler=True, scheduler_warmup_epochs=3),
        "runs.example.training: TorchTrainingConfig.scheduler_warmup_epochs needs use_scheduler=True"),
    "GPUs per member for a CPU run": (lambda c: run(c).update(gpus_per_member=2),
                                      "runs.example.gpus_per_member: 2 GPUs per member needs device cuda; a CPU "
                                      "member trains in one process"),
    "GPUs per member on a numbered GPU": (lambda c: run(c).update(gpus_per_member=4, device="cuda:1"),
                                          "runs.example.gpus_per_member: 4 GPUs per member needs device cuda (a GPU "
                                          "per process), not cuda:1"),
    "no GPU per member": (lambda c: run(c).update(gpus_per_member=0, device="cuda"),
                          "runs.example.gpus_per_member: 0 is less than the minimum of 1"),
    "absurd rad_order": (lambda c: descriptor(c).update(rad_order=100000),
                         f"runs.example.descriptor.rad_order: 100000 is greater than the maximum of {ORDER.high}"),
}



def loop(config):
    return run(config)["active_learning"]


LOOP = "runs.example.active_learning"
LOOP_CASES = {
    "trust levels reversed": (lambda c: loop(c).update(trust_lo=0.5, trust_hi=0.1),
                              f"{LOOP}: trust_lo (0.5) must be below trust_hi (0.1)"),
    "trust levels equal": (lambda c: loop(c).update(trust_lo=0.5, trust_hi=0.5),
                           f"{LOOP}: trust_lo (0.5) must be below trust_hi (0.5)"),
    "a negative temperature": (lambda c: loop(c).update(temperatures=[300, -5]),
                               f"{LOOP}.temperatures[1]: -5 is less than or equal to the minimum of 0"),
    "temperature 0": (lambda c: loop(c).update(temperatures=[0]),
                      f"{LOOP}.temperatures[0]: 0 is less than or equal to the minimum of 0"),
    "a temperature twice": (lambda c: loop(c).update(temperatures=[300, 300.0]),
                            f"{LOOP}.temperatures: [300, 300.0] has non-unique elements"),
    "a temperature of a plasma": (lambda c: loop(c).update(temperatures=[300, 1e6]),
                                  f"{LOOP}.temperatures[1]: 1000000.0 is greater than the maximum of 10000"),
    "max_frames beyond what a round labels": (lambda c: loop(c).update(max_frames=100000),
                                              f"{LOOP}.max_frames: 100000 is greater than the maximum of 1000"),
    "no rounds": (lambda c: loop(c).update(rounds=0), f"{LOOP}.rounds: 0 is less than the minimum of 1"),
    "a calculator module that does not exist": (
        lambda c: loop(c)["label"].update(calculator="no_such_package.calculators.DFT"),
        f"{LOOP}.label.calculator: calculator 'no_such_package.calculators.DFT': cannot import "
        "no_such_package.calculators"),
    "a calculator class that does not exist": (
        lambda c: loop(c)["label"].update(calculator="ase.calculators.emt.NoSuchEMT"),
        f"{LOOP}.label.calculator: calculator 'ase.calculators.emt.NoSuchEMT': ase.calculators.emt has no class"),
    "shell syntax as a calculator": (lambda c: loop(c)["label"].update(calculator="ase.EMT; touch pwned"),
                                     f"{LOOP}.label.calculator: 'ase.EMT; touch pwned' does not match"),
    "npt without stresses": (lambda c: (loop(c).update(ensemble="npt"), run(c)["training"].update(stress_weight=0)),
                             f"{LOOP}.ensemble: npt needs a potential trained on stresses"),
    "seed files that match nothing": (lambda c: loop(c).update(seed_files="no/such/*.xyz"),
                                      f"{LOOP}.seed_files: 'no/such/*.xyz' matches no file"),
    "no labelling calculator": (lambda c: loop(c).pop("label"), f"{LOOP}: 'label' is a required property"),
    "no test split to compare rounds on": (lambda c: run(c)["split"].update(testpercent=0),
                                           f"{LOOP}: the rounds are evaluated on round 0's test split"),
}


@pytest.mark.parametrize("edit, message", LOOP_CASES.values(), ids=LOOP_CASES)
def test_a_bad_active_learning_section_is_refused_naming_the_key(tmp_path, monkeypatch, edit, message):
    monkeypatch.chdir(tmp_path)
    assert_refused(shipped_config(), edit, message)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("edit, message", CASES.values(), ids=CASES)
def test_a_bad_config_is_refused_naming_the_key(edit, message):
    assert_refused(default_config(), edit, message)


ALIAS_BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
    f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 9)}]" for k in range(1, 9)])  # 1.2 kB, 9**9 values expanded


@pytest.mark.parametrize("place", ["kwargs", "unknown key"])
def test_a_yaml_alias_bomb_is_refused_before_anything_walks_it(place):
    bomb = yaml.safe_load(ALIAS_BOMB)["a8"]
    config = shipped_config()
    if place == "kwargs":  # non_finite would walk its 387 million values
        loop(config)["label"]["kwargs"] = {"bomb": bomb}
        where = rf"{LOOP}.label.kwargs.bomb(\[0\])*"
    else:  # jsonschema's message would print them
        run(config)["bogus"] = bomb
        where = r"runs.example.bogus(\[0\])*"
    with pytest.raises(ConfigError, match=f"{where}: holds more than 100000 values once its YAML aliases"):
        check_config(config, SCHEMA)


def test_a_config_nested_thousands_deep_is_refused():
    config = shipped_config()
    deep = []
    for _ in range(5000):  # as YAML ([[[...]]]) loads, 2000 levels deep in a plain python
        deep = [deep]
    loop(config)["label"]["kwargs"] = {"deep": deep}
    with pytest.raises(ConfigError, match="config: nested too deeply"):
        check_config(config, SCHEMA)


def test_a_yaml_alias_of_itself_is_refused():
    config = shipped_config()
    loop(config)["label"]["kwargs"] = yaml.safe_load("loop: &loop [1, *loop]")
    with pytest.raises(ConfigError, match=rf"{LOOP}.label.kwargs.loop\[1\]: holds itself"):
        check_config(config, SCHEMA)


def assert_refused(config, edit, message):
    """Only the calculator cases ask a python (a subprocess) to import the calculator."""
    edit(config)
    python = sys.executable if ".label.calculator" in message else None
    with pytest.raises(ConfigError) as refused:
        check_config(config, SCHEMA, python=python, pythonpath=str(ROOT))
    assert message in str(refused.value)


def test_the_shipped_config_passes_and_gets_the_schema_defaults():
    config = shipped_config()
    check_config(config, SCHEMA, python=sys.executable, pythonpath=str(ROOT))
    assert config["runs"]["example"]["committee"]["base_seed"] == 11


@pytest.mark.slow
@pytest.mark.parametrize("config, edit, message", [
    (default_config, *CASES["misspelt optimizer parameter"]),
    (default_config, *CASES["architecture misses a species"]),
    (shipped_config, *LOOP_CASES["a calculator module that does not exist"]),
], ids=["schema", "run check", "calculator probe"])
def test_the_dry_run_makes_the_checks(tmp_path, config, edit, message):
    """Each kind of check (the schema, a run's own, the labelling calculator asked of the jobs' python) stops
    a dry run before it plans a job."""
    config = config()
    edit(config)
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0 and message in result.stdout + result.stderr, result.stdout + result.stderr
    assert "Job stats" not in result.stdout


def seed_file(path, scale=1.0, gap=None):
    """Two fcc Cu cells of 4 atoms: lengths times ``scale`` (0.1: Å read as nm); the second with its first two
    atoms ``gap`` Å apart."""
    from ase.build import bulk

    from aenet_core.io import write_extxyz
    from aenet_core.structure import Structure

    frames = [bulk("Cu", cubic=True), bulk("Cu", cubic=True)]
    if gap is not None:
        frames[1].positions[1] = frames[1].positions[0] + [gap, 0, 0]
    for atoms in frames:
        atoms.set_cell(atoms.cell * scale, scale_atoms=True)
    write_extxyz(path, [Structure.from_ase(atoms) for atoms in frames])
    return str(path)


@pytest.mark.parametrize("scale, gap, message", [
    (0.1, 0.2, "(frame 0): 4 atoms at 85.02 atoms/Å³"),  # the density is checked first
    (1.0, 0.4, "(frame 1): atoms 0 (Cu) and 1 (Cu) are 0.4 Å apart"),
])
def test_seed_files_the_database_would_refuse_are_named_before_any_job(tmp_path, scale, gap, message):
    from aenet_core.workflow.config import seed_problems

    path = seed_file(tmp_path / "seeds.extxyz", scale, gap)
    config = shipped_config()
    loop(config)["seed_files"] = path
    check_config(config, SCHEMA)
    problems = seed_problems("example", run(config), [path])
    assert problems[0].startswith(f"{LOOP}.seed_files: {path} ") and message in problems[0]
    assert len(problems) == 1 + (scale != 1)  # in nm, both frames
    assert seed_problems("example", run(config), [seed_file(tmp_path / "good.extxyz")]) == []


@pytest.mark.slow
def test_a_run_with_a_seed_file_in_nm_stops_before_its_first_job(tmp_path):
    config = shipped_config()
    loop(config)["seed_files"] = seed_file(tmp_path / "seeds.extxyz", scale=0.1)
    result = snakemake(tmp_path, config, "--cores", "1")
    assert result.returncode != 0 and "seeds.extxyz (frame 0): 4 atoms at" in result.stderr, result.stderr
    assert not (tmp_path / "results").exists()


def test_the_schema_ranges_are_the_library_rules_the_descriptor_applies():
    from aenet_core.descriptor import ChebyshevDescriptor

    defs = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["$defs"]
    for name, rule in (("order", ORDER), ("seed", SEED)):
        assert {k: v for k, v in defs[name].items() if k != "description"} == rule.json_schema()
    with pytest.raises(ValueError, match=r"ChebyshevDescriptor.rad_order must be an int in \[0, 100\]"):
        ChebyshevDescriptor(["Cu"], ORDER.high + 1, 4.0, 2, 3.0)


@pytest.mark.slow
def test_a_dry_run_imports_no_calculator_module_from_the_working_directory(tmp_path):
    (tmp_path / "local_calc.py").write_text("from pathlib import Path\nPath('imported').touch()\n"
                                            "from ase.calculators.emt import EMT as Local\n")
    config = shipped_config()
    loop(config)["label"].update(calculator="local_calc.Local", kwargs={"asap_cutof": True})
    result = snakemake(tmp_path, config, "-n")
    assert result.returncode != 0 and "Job stats" not in result.stdout
    refused = f"{LOOP}.label.calculator: calculator 'local_calc.Local': cannot import local_calc"
    assert refused in result.stdout + result.stderr
    assert not (tmp_path / "imported").exists()
    (tmp_path / "local_calc.py").unlink()
    loop(config)["label"]["calculator"] = "ase.calculators.emt.EMT"
    result = snakemake(tmp_path, config, "-n")
    refused = f"{LOOP}.label.kwargs: 'asap_cutof' is not a keyword argument of ase.calculators.emt.EMT; did you mean"
    assert f"{refused} asap_cutoff?" in result.stdout + result.stderr and "Job stats" not in result.stdout
