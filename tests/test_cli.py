"""The command-line entry point: the commands the workflow rules call, help, failures and predict."""
import argparse
import csv
import importlib
import json
import re
import shutil
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import training_setup

import aenet_core
from aenet_core import cli, uncertainty
from aenet_core.cli import build_parser, main, run
from aenet_core.command_line import FAILURE_LINE, failure_line, read_settings
from aenet_core.committee import TorchCommitteeConfig, TorchCommitteePotential
from aenet_core.example_data import make_cuau_structures
from aenet_core.files import write_json
from aenet_core.io import write_extxyz
from aenet_core.potential import TorchANNPotential
from aenet_core.structure import Structure
from aenet_core.data import HDF5StructureDataset
from aenet_core.descriptor import DEFAULT_MIN_CUTOFF
from aenet_core.io import read_structures, write_xsf
from aenet_core.reference_energies import ReferenceEnergies
from aenet_core.split import Split


def test_example_data_then_featurize(tmp_path):
    data = tmp_path / "example.extxyz"
    main(["example-data", "--output", str(data), "--n-structures", "5", "--seed", "3"])
    structures = read_structures(data)
    assert len(structures) == 5
    assert all(s.has_forces() and s.energy is not None and s.is_periodic() for s in structures)
    assert {x for s in structures for x in s.species} <= {"Cu", "Au"}

    out = tmp_path / "features.npz"
    main(["featurize", str(data), "--output", str(out), "--species", "Cu", "Au", "--rad-order", "4",
          "--rad-cutoff", "4.5", "--ang-order", "2", "--ang-cutoff", "3.5"])
    saved = np.load(out)
    assert saved["features"].shape == (sum(s.n_atoms for s in structures), 2 * (5 + 3))
    assert saved["n_atoms"].tolist() == [s.n_atoms for s in structures]
    assert not list(tmp_path.glob(".*.tmp"))


def test_featurize_rejects_a_species_missing_from_the_descriptor(tmp_path):
    data = tmp_path / "example.extxyz"
    main(["example-data", "--output", str(data), "--n-structures", "2"])
    with pytest.raises(ValueError, match="not in the descriptor species"):
        run(["featurize", str(data), "--output", str(tmp_path / "f.npz"), "--species", "Cu",
             "--rad-order", "2", "--rad-cutoff", "4.0", "--ang-order", "1", "--ang-cutoff", "3.0"])
    assert not (tmp_path / "f.npz").exists()


def test_reference_energies_database_and_split(tmp_path):
    data = tmp_path / "example.extxyz"
    main(["example-data", "--output", str(data), "--n-structures", "8", "--seed", "1"])
    refs = tmp_path / "refs.json"
    main(["reference-energies", str(data), "--output", str(refs)])
    fitted = ReferenceEnergies.load(refs)
    assert fitted.method == "regression" and set(fitted.atomic_energies) == {"Cu", "Au"}
    fixed = tmp_path / "fixed.json"
    main(["reference-energies", str(data), "--output", str(fixed), "--fixed", "Cu=-0.5", "Au=-0.25"])
    assert ReferenceEnergies.load(fixed).atomic_energies == {"Cu": -0.5, "Au": -0.25}

    db_path = tmp_path / "db.h5"
    main(["build-database", str(data), "--output", str(db_path), "--reference-energies", str(refs),
          "--species", "Cu", "Au", "--rad-order", "4", "--rad-cutoff", "4.5", "--ang-order", "2",
          "--ang-cutoff", "3.5"])
    db = HDF5StructureDataset(None, db_path, mode="load")
    assert len(db) == 8 and db.has_persisted_force_derivatives() and db.atomic_energies == fitted.atomic_energies
    assert db.descriptor.min_cutoff == DEFAULT_MIN_CUTOFF  # not given: the descriptor's own default
    split_path = tmp_path / "split.json"
    main(["split", str(db_path), "--output", str(split_path), "--testpercent", "25", "--split-seed", "3"])
    split = Split.load(split_path)
    assert len(split.test) == 2 and split.split_seed == 3
    split.check(db)
    with pytest.raises(SystemExit, match="SYMBOL=ENERGY"):
        run(["reference-energies", str(data), "--output", str(fixed), "--fixed", "Cu:-0.5"])
    main(["reference-energies", str(data), "--output", str(fixed), "--method", "fixed", "--fixed", "Cu=-0.5",
          "Au=-0.25"])
    assert ReferenceEnergies.load(fixed).method == "fixed"
    with pytest.raises(ValueError, match="no value for Au"):
        run(["reference-energies", str(data), "--output", str(fixed), "--method", "fixed", "--fixed", "Cu=-0.5"])


def test_plausibility_limits_are_command_line_options(tmp_path):
    data = tmp_path / "example.extxyz"
    main(["example-data", "--output", str(data), "--n-structures", "3", "--seed", "2"])
    close, strong = read_structures(data)[:2]
    close.positions[1] = close.positions[0] + [0.3, 0.0, 0.0]
    strong.forces[0, 2] = 50.0
    write_xsf(tmp_path / "close.xsf", close)
    write_xsf(tmp_path / "strong.xsf", strong)
    db_path = tmp_path / "db.h5"
    build = ["build-database", str(data), str(tmp_path / "close.xsf"), "--output", str(db_path), "--species", "Cu",
             "Au", "--rad-order", "2", "--rad-cutoff", "4.0", "--ang-order", "1", "--ang-cutoff", "3.0"]
    with pytest.raises(ValueError, match=r"close\.xsf \(frame 0\): atoms 0 \(\w+\) and 1 \(\w+\) are 0\.3 Å apart"):
        run(build)
    assert not db_path.exists()
    main([*build, "--min-distance", "0.2"])
    assert len(HDF5StructureDataset(None, db_path, mode="load")) == 4
    with pytest.raises(ValueError, match=r"PlausibilityLimits\.max_pairs_per_atom must be a finite number > 0"):
        run([*build, "--max-pairs-per-atom", "0"])
    refs = ["reference-energies", str(data), str(tmp_path / "strong.xsf"), "--output", str(tmp_path / "refs.json")]
    with pytest.raises(ValueError, match=r"strong\.xsf \(frame 0\): force on atom 0 \(\w+\) along z is 50\.0 eV/Å; "
                                         r"a component beyond ±20 eV/Å"):
        run([*refs, "--force-limit", "20"])
    main(refs)
    assert ReferenceEnergies.load(tmp_path / "refs.json").metadata["n_samples_used"] == 4


# -- the command line as people use it: version, help, failures, settings files, predict ------------

HEAVY = ("torch", "pandas", "matplotlib", "ase", "h5py", "scipy")
HELP_PROBE = """
import runpy, sys
sys.argv = ["aenet-core", "--help"]
try:
    runpy.run_module("aenet_core.cli", run_name="__main__")
except SystemExit:
    pass
from aenet_core.cli import build_parser
for name, command in build_parser()._subparsers._group_actions[0].choices.items():
    command.format_help()
print("HEAVY", sorted(m for m in {heavy!r} if m in sys.modules))
"""


def test_help_imports_no_heavy_module():
    probe = HELP_PROBE.format(heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "usage: aenet-core" in result.stdout
    assert result.stdout.splitlines()[-1] == "HEAVY []"


COMMAND_PROBE = """
import runpy, sys
sys.argv = ["aenet-core", *{argv!r}]
runpy.run_module("aenet_core.cli", run_name="__main__")
print("HEAVY", sorted(m for m in ("torch", "pandas", "matplotlib") if m in sys.modules))
"""


def heavy_imports(argv) -> str:
    """The last line of ``aenet-core argv`` run in a fresh interpreter: which of torch, pandas and matplotlib
    it imported."""
    probe = COMMAND_PROBE.format(argv=[str(arg) for arg in argv])
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.splitlines()[-1]


def test_the_bookkeeping_commands_import_no_torch_pandas_or_matplotlib(trained, tmp_path):
    descriptor = ["--species", "Cu", "Au", "--rad-order", "2", "--rad-cutoff", "4.0", "--ang-order", "1",
                  "--ang-cutoff", "3.0"]
    for name, seed in (("base", "1"), ("shard", "2")):
        main(["example-data", "--output", str(tmp_path / f"{name}.extxyz"), "--n-structures", "3", "--seed", seed])
        main(["build-database", str(tmp_path / f"{name}.extxyz"), "--output", str(tmp_path / f"{name}.h5"),
              *descriptor])
    base, shard, split = tmp_path / "base.h5", tmp_path / "shard.h5", tmp_path / "split.json"
    write_json(tmp_path / "evaluation.json", {})
    shutil.copytree(trained / "committee", tmp_path / "committee")
    for argv in (["split", base, "--output", split, "--split-seed", "1"],
                 ["split", base, shard, "--output", tmp_path / "extended.json", "--extend", split],
                 ["exploration-seeds", "--database", base, "--split", split, "--count", "1", "--seed", "0",
                  "--output", tmp_path / "seeds.extxyz"],
                 ["round-summary", "--round", "0", "--evaluation", tmp_path / "evaluation.json", "--output",
                  tmp_path / "summary.json"],
                 ["aggregate", tmp_path / "committee", "--table", tmp_path / "members.csv"],
                 ["lammps-input", trained / "ascii"],
                 ["reference-energies", tmp_path / "base.extxyz", "--output", tmp_path / "references.json"],
                 ["label", tmp_path / "base.extxyz", "--batch", "0", "--batch-size", "2", "--calculator",
                  "ase.calculators.emt.EMT", "--workdir", tmp_path / "work", "--output", tmp_path / "labelled.extxyz",
                  "--report", tmp_path / "label.json"],
                 ["merge-labels", tmp_path / "labelled.extxyz", "--reports", tmp_path / "label.json", "--output",
                  tmp_path / "merged.extxyz", "--report", tmp_path / "labelling.json"]):
        assert heavy_imports(argv) == "HEAVY []", argv[0]


def test_the_members_table_is_what_pandas_writes(trained, tmp_path):
    from aenet_core.committee import TorchCommitteeTrainResult

    committee = tmp_path / "committee"
    shutil.copytree(trained / "committee", committee)
    summary = committee / "member_001" / "summary.json"
    failed = json.loads(summary.read_text()) | {"status": "failed", "metrics": {}, "seed": None,
                                                "error": 'RuntimeError: "nan", loss'}
    write_json(summary, failed)
    main(["aggregate", str(committee), "--table", str(tmp_path / "members.csv")])
    result = TorchCommitteeTrainResult.from_metadata(committee / "committee_metadata.json")
    assert (tmp_path / "members.csv").read_text() == result.to_dataframe().to_csv(index=False)
    assert read_csv(tmp_path / "members.csv")[0]["seed"].endswith(".0")  # a seed missing makes them floats


def test_explore_takes_every_md_setting_the_workflow_passes():
    from aenet_core.active_learning import commands
    from aenet_core.active_learning.settings import MD_OPTIONS

    assert {*commands.MD_HELP, "ensemble"} == set(MD_OPTIONS)


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"aenet-core {aenet_core.__version__}"


def commands() -> dict:
    return build_parser()._subparsers._group_actions[0].choices


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {action.dest}" for name, parser in commands().items() for action in parser._actions
               if not action.help or action.help == argparse.SUPPRESS]
    assert not missing
    assert len(commands()) >= 18 and "predict" in commands()


@pytest.mark.parametrize("command, option, unit", [
    ("featurize", "--rad-cutoff", "(Å)"), ("build-database", "--max-energy", "eV/atom"),
    ("build-database", "--force-limit", "eV/Å"), ("build-database", "--stress-limit", "eV/Å³"),
    ("explore", "--temperature", "(K)"), ("explore", "--timestep", "(fs;"), ("explore", "--pressure", "(GPa;"),
    ("explore", "--trust-hi", "eV/Å"), ("select", "--trust-lo", "eV/Å"), ("reference-energies", "--fixed", "(eV)")])
def test_values_with_units_say_them(command, option, unit):
    (action,) = [a for a in commands()[command]._actions if option in a.option_strings]
    assert unit in action.help


def test_the_defaults_help_shows_are_the_librarys():
    from aenet_core import evaluation, example_data, reference_energies

    assert (cli.EXAMPLE_SIZE, cli.EXAMPLE_SEED) == (example_data.EXAMPLE_SIZE, example_data.EXAMPLE_SEED)
    assert cli.METHODS == reference_energies.METHODS and cli.DEFAULT_N_UNCERTAIN == evaluation.DEFAULT_N_UNCERTAIN


def test_the_user_facing_error_classes_exist():
    for qualified in cli.USER_ERRORS:
        module, _, name = qualified.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type), qualified


def failed(capsys, argv) -> list:
    """The stderr lines of ``main(argv)``, which must fail with status 1."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 1
    return capsys.readouterr().err.splitlines()


def test_a_failure_ends_with_one_line_naming_the_command(tmp_path, capsys):
    lines = failed(capsys, ["train-member", "--database", "db.h5", "--split", "s.json", "--member-index", "0",
                            "--output-dir", str(tmp_path)])
    assert lines[-1] == ("aenet-core train-member failed: train-member needs the hidden layers: --layers "
                         "(e.g. --layers 10:tanh 10:tanh) or architecture in --settings")
    assert FAILURE_LINE.match(lines[-1])["command"] == "train-member"
    assert not any("Traceback" in line for line in lines)  # our own message says it all
    lines = failed(capsys, ["predict", str(tmp_path / "missing.pt"), "x.xsf", "--output", "out.csv"])
    assert lines[-1].startswith("aenet-core predict failed: ") and "missing.pt" in lines[-1]
    assert not any("Traceback" in line for line in lines)  # a user-facing error


def test_an_unexpected_error_keeps_its_traceback_above_the_line(monkeypatch, capsys):
    def broken(args):
        raise KeyError("energy")

    monkeypatch.setattr(cli, "_example_data", broken)
    lines = failed(capsys, ["example-data", "--output", "x.extxyz"])
    assert lines[0].startswith("Traceback") and lines[-1] == "aenet-core example-data failed: KeyError: 'energy'"


def test_the_failure_line_is_the_last_line_of_a_log_of_both_streams(tmp_path):
    log = subprocess.run([sys.executable, "-m", "aenet_core.cli", "split", str(tmp_path / "db.h5"), "--output",
                          str(tmp_path / "s.json")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert log.returncode == 1
    assert log.stdout.splitlines()[-1] == ("aenet-core split failed: split needs --split-seed (or --extend "
                                           "BASE_SPLIT, to extend the split of the first database to the others)")
    assert failure_line("x", "one\n  two\n") == "aenet-core x failed: one; two"


@pytest.mark.parametrize("text, message", [
    ("architecture: [[4, tanh]]\ntrainig: {}\n", "unknown key(s) trainig; expected architecture, training"),
    ("- 1\n- 2\n", "expected a mapping with keys architecture, training; got a list"),
    ("architecture: [[4, tanh]\n", "not a YAML or JSON file"),
    ("architecture: !!python/object/apply:os.system [echo]\n", "not a YAML or JSON file")])
def test_settings_files_are_plain_data_with_known_keys(tmp_path, text, message):
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit, match=re.escape(message)):
        read_settings(path, cli.MEMBER_SETTINGS)


@pytest.mark.filterwarnings("ignore:no atomic reference energy:UserWarning")
def test_train_member_takes_a_settings_file_and_plain_layers(tmp_path):
    db, split = training_setup.cli_database(tmp_path, 6)
    settings = tmp_path / "settings.yaml"
    settings.write_text("architecture: {Cu: [[4, tanh]], Au: [[3, sigmoid], [2, tanh]]}\n"
                        "training: {iterations: 2, method: {name: adam, mu: 0.01, batchsize: 2}, seed: 5}\n")
    member = ["train-member", "--database", str(db), "--split", str(split), "--member-index", "0",
              "--settings", str(settings), "--output-dir"]
    main([*member, str(tmp_path / "a")])
    main([*member, str(tmp_path / "b"), "--layers", "3:tanh", "3:tanh"])
    a, b = (TorchANNPotential.from_file(tmp_path / name / "model.pt") for name in "ab")
    assert a.arch == {"Cu": [(4, "tanh")], "Au": [(3, "sigmoid"), (2, "tanh")]}
    assert b.arch == {"Cu": [(3, "tanh"), (3, "tanh")], "Au": [(3, "tanh"), (3, "tanh")]}
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["seed"] == 5 and summary["training_config"]["iterations"] == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args([*member, "x", "--layers", "tanh"])


def test_label_takes_its_calculator_from_a_settings_file(tmp_path):
    selected, settings = tmp_path / "selected.extxyz", tmp_path / "calculator.yaml"
    write_extxyz(selected, [s.without_labels() for s in make_cuau_structures(3, seed=2)])
    settings.write_text("calculator: ase.calculators.emt.EMT\nkwargs: {asap_cutoff: true}\n")
    main(["label", str(selected), "--batch", "0", "--batch-size", "2", "--calculator-settings", str(settings),
          "--workdir", str(tmp_path / "work"), "--output", str(tmp_path / "labelled.extxyz"), "--report",
          str(tmp_path / "report.json")])
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["calculator"] == "ase.calculators.emt.EMT" and report["kwargs"] == {"asap_cutoff": True}
    assert report["n_labelled"] == 2 and len(read_structures(tmp_path / "labelled.extxyz")) == 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model file, its .nn.ascii folder, a 2-member committee with a calibration, and structures to predict
    (periodic Cu-Au cells and one cluster)."""
    root = tmp_path_factory.mktemp("predict")
    structures = training_setup.cuau_structures()
    potential = training_setup.potential()
    potential.train(structures=structures, config=training_setup.config(iterations=2))
    potential.save(root / "model.pt")
    potential.to_aenet_ascii(root / "ascii", prefix="pot")
    committee = TorchCommitteePotential(training_setup.MEMBER_ARCH, training_setup.descriptor())
    committee.train(structures=structures, config=training_setup.member_config(),
                    committee_config=TorchCommitteeConfig(num_members=2, base_seed=3, output_dir=root / "committee"))
    write_json(root / "calibration.json", {"format": uncertainty.FORMAT, "version": uncertainty.VERSION,
                                           "factor": 2.5})
    cluster = Structure(structures[0].positions[:4], structures[0].species[:4], name="cluster")
    write_extxyz(root / "data.extxyz", [*structures[:3], cluster])
    return root


def read_csv(path) -> list:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_a_model_file_to_csv(trained, tmp_path):
    data, out = str(trained / "data.extxyz"), tmp_path / "predictions.csv"
    main(["predict", str(trained / "model.pt"), data, "--output", str(out)])
    expected = TorchANNPotential.from_file(trained / "model.pt").predict(data, eval_forces=True, eval_stress=True)
    rows = read_csv(out)
    assert [row["identifier"] for row in rows] == expected.structure_paths == [f"{data}#frame={i}" for i in range(4)]
    for row, energy, forces, stress, n_atoms in zip(rows, expected.total_energy, expected.forces, expected.stress,
                                                    [len(t) for t in expected.atom_types]):
        assert int(row["n_atoms"]) == n_atoms and float(row["energy"]) == energy
        assert float(row["energy_per_atom"]) == pytest.approx(energy / n_atoms, rel=1e-15)
        assert float(row["max_force"]) == pytest.approx(np.linalg.norm(forces, axis=1).max(), rel=1e-12)
        if stress is None:
            assert row["stress_xx"] == ""
        else:
            assert [float(row[f"stress_{c}"]) for c in ("xx", "yy", "zz", "yz", "xz", "xy")] == [
                stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]]
    assert "energy_std" not in rows[0]
    assert expected.stress[3] is None and expected.stress[0] is not None  # the cluster has no stress


def test_predict_a_committee_to_csv_with_its_spreads(trained, tmp_path):
    data, out = str(trained / "data.extxyz"), tmp_path / "committee.csv"
    main(["predict", str(trained / "committee"), data, "--output", str(out), "--calibration",
          str(trained / "calibration.json")])
    expected = TorchCommitteePotential.from_directory(trained / "committee").predict(data, eval_forces=True)
    for row, result in zip(read_csv(out), expected):
        assert float(row["energy"]) == pytest.approx(result.energy, rel=1e-12)
        assert float(row["energy_std"]) == pytest.approx(result.energy_std, rel=1e-9)
        assert float(row["energy_std_calibrated"]) == pytest.approx(2.5 * result.energy_std, rel=1e-9)
        spread = np.sqrt((result.forces_std ** 2).sum(axis=1)).max()
        assert float(row["max_force_std"]) == pytest.approx(spread, rel=1e-9) and spread > 0
    main(["predict", str(trained / "committee" / "committee_metadata.json"), data, "--output", str(out),
          "--energy-only"])
    rows = read_csv(out)
    assert "energy_std_calibrated" not in rows[0] and "max_force_std" not in rows[0] and "stress_xx" not in rows[0]
    assert float(rows[0]["energy_std"]) == pytest.approx(expected[0].energy_std, rel=1e-9)
    run_folder = tmp_path / "run_folder.csv"  # a workflow run's folder names its committee/
    main(["predict", str(trained), data, "--output", str(run_folder), "--energy-only"])
    assert read_csv(run_folder) == rows


def test_predict_to_extxyz_never_passes_for_labels_unless_asked(trained, tmp_path):
    data, out = str(trained / "data.extxyz"), tmp_path / "committee.extxyz"
    main(["predict", str(trained / "committee"), data, "--output", str(out)])
    expected = TorchCommitteePotential.from_directory(trained / "committee").predict(data, eval_forces=True,
                                                                                        eval_stress=True)
    frames = ase.io.read(out, index=":")
    assert all(s.energy is None and s.forces is None and s.stress is None for s in read_structures(out))
    for atoms, result in zip(frames, expected):
        assert atoms.info["committee_energy"] == pytest.approx(result.energy, rel=1e-12)
        assert atoms.info["energy_std"] == pytest.approx(result.energy_std, rel=1e-9)
        np.testing.assert_allclose(atoms.arrays["committee_forces"], result.forces, atol=1e-7)
        np.testing.assert_allclose(atoms.arrays["force_std"], np.linalg.norm(result.forces_std, axis=1), atol=1e-7)
        assert atoms.info["max_force_std"] == pytest.approx(atoms.arrays["force_std"].max(), abs=1e-7)
        assert ("committee_stress" in atoms.info) == (result.stress is not None)
    assert frames[0].info["name"] == f"{data}#frame=0"
    main(["predict", str(trained / "model.pt"), data, "--output", str(out), "--as-labels"])
    expected = TorchANNPotential.from_file(trained / "model.pt").predict(data, eval_forces=True, eval_stress=True)
    labelled = read_structures(out)
    assert [s.energy for s in labelled] == pytest.approx(expected.total_energy, rel=1e-12)
    np.testing.assert_allclose(labelled[1].forces, expected.forces[1], atol=1e-7)
    np.testing.assert_allclose(labelled[0].stress, expected.stress[0], rtol=1e-7, atol=1e-12)


def test_predict_from_nn_ascii_files(trained, tmp_path):
    data, out = str(trained / "data.extxyz"), tmp_path / "ascii.extxyz"
    main(["predict", str(trained / "ascii"), data, "--output", str(out)])
    files = {species: trained / "ascii" / f"pot.{species}.nn.ascii" for species in ("Cu", "Au")}
    expected = TorchANNPotential.from_aenet_ascii(files).predict(data, eval_forces=True)
    frames = ase.io.read(out, index=":")
    assert [f.info["predicted_energy"] for f in frames] == pytest.approx(expected.total_energy, rel=1e-12)
    np.testing.assert_allclose(frames[2].arrays["predicted_forces"], expected.forces[2], atol=1e-7)
    assert "predicted_stress" in frames[0].info and "predicted_stress" not in frames[3].info
    with pytest.raises(SystemExit, match="must end in .csv or .extxyz"):
        run(["predict", str(trained / "model.pt"), data, "--output", str(tmp_path / "out.json")])
    with pytest.raises(SystemExit, match="--calibration applies to a committee"):
        run(["predict", str(trained / "model.pt"), data, "--output", str(out), "--calibration", "c.json"])
