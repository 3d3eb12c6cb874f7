"""Labelling calculators: only ASE Calculator classes, never imported from the working directory, and their
keyword arguments (kwargs and each retry) checked by name before any job, without constructing them."""
import json
import os
import subprocess
import sys

import pytest
from ase.build import bulk
from workflow_setup import ROOT, SCHEMA, shipped_config

from aenet_core.active_learning.calculators import calculator_class, settings_problems
from aenet_core.active_learning.trajectory import write_trajectory
from aenet_core.workflow.config import ConfigError, check_config

LABEL = "runs.example.active_learning.label"
# A calculator module that says so when imported (and prints), and a class that says so when constructed.
MODULE = """from pathlib import Path
from ase.calculators.emt import EMT
Path("imported").touch()
print("a module that prints on import")
class Local(EMT):
    def __init__(self, **kwargs):
        Path("constructed").touch()
        super().__init__(**kwargs)
"""


def calculator_module(folder, name) -> str:
    """A module ``name`` in ``folder`` with a calculator class Local; its import path."""
    (folder / f"{name}.py").write_text(MODULE)
    return f"{name}.Local"


def check(calculator, kwargs=None, retries=None, pythonpath=str(ROOT)):
    """check_config of the shipped config with this labelling calculator, asked of this python."""
    config = shipped_config()
    label = config["runs"]["example"]["active_learning"]["label"]
    label.update(calculator=calculator, **({"kwargs": kwargs} if kwargs else {}),
                 **({"retries": retries} if retries else {}))
    check_config(config, SCHEMA, python=sys.executable, pythonpath=pythonpath)


def test_a_function_named_as_the_calculator_is_refused_and_never_called(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        check("subprocess.run", {"args": "touch PWNED", "shell": True})
    assert str(refused.value) == (
        f"{LABEL}.calculator: calculator 'subprocess.run': run is a function, not a class (expected an ASE "
        f"calculator class: a subclass of ase.calculators.calculator.BaseCalculator) (asked of {sys.executable})")
    assert not (tmp_path / "PWNED").exists()


def test_a_calculator_module_in_the_working_directory_is_not_imported_by_the_probe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = calculator_module(tmp_path, "probe_local_calc")
    with pytest.raises(ConfigError) as refused:
        check(path)
    assert f"{LABEL}.calculator: calculator '{path}': cannot import probe_local_calc" in str(refused.value)
    assert "installed package or from a folder on PYTHONPATH" in str(refused.value)
    assert not (tmp_path / "imported").exists()
    check(path, pythonpath=f"{ROOT}{os.pathsep}{tmp_path}")  # its folder on PYTHONPATH: imported, not built
    assert (tmp_path / "imported").exists() and not (tmp_path / "constructed").exists()


def test_the_label_job_does_not_import_a_calculator_from_its_working_directory(tmp_path):
    """The label rule's command (python -m: the working directory first on sys.path), without PYTHONSAFEPATH."""
    write_trajectory(tmp_path / "selected.extxyz", [bulk("Cu", cubic=True)])
    path = calculator_module(tmp_path, "job_local_calc")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONSAFEPATH"} | {"PYTHONPATH": str(ROOT)}
    job = subprocess.run([sys.executable, "-m", "aenet_core.cli", "label", "selected.extxyz", "--batch", "0",
                          "--batch-size", "1", "--calculator", path, "--workdir", "work", "--output", "out.extxyz",
                          "--report", "out.json"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert job.returncode != 0 and f"calculator '{path}': cannot import job_local_calc" in job.stderr, job.stderr
    assert not (tmp_path / "imported").exists() and not (tmp_path / "out.extxyz").exists()


def test_a_run_started_in_the_repository_imports_no_calculator_from_it(tmp_path):
    """Snakemake run in the repository: its root is the working directory and on PYTHONPATH (for aenet_core,
    named again as AENET_CORE_ROOT, as the rules' shell prefix does), still no calculator is imported from it."""
    (tmp_path / "aenet_core").symlink_to(ROOT / "aenet_core")
    path = calculator_module(tmp_path, "root_local_calc")
    env = os.environ | {"PYTHONPATH": str(tmp_path), "AENET_CORE_ROOT": str(tmp_path), "PYTHONSAFEPATH": "1"}
    probe = subprocess.run([sys.executable, "-m", "aenet_core.active_learning.calculators"], capture_output=True,
                           text=True, cwd=tmp_path, env=env, input=json.dumps({"run": {"calculator": path}}))
    assert "cannot import root_local_calc" in json.loads(probe.stdout.splitlines()[-1])["run"][0], probe.stderr
    assert not (tmp_path / "imported").exists()


@pytest.mark.parametrize("entry", ["", "cwd"])
def test_calculator_class_skips_the_working_directory_unless_pythonpath_names_it(tmp_path, monkeypatch, entry):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path) if entry == "cwd" else entry)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    before = list(sys.path)
    path = calculator_module(tmp_path, f"class_local_calc_{entry or 'empty'}")
    with pytest.raises(ValueError, match="cannot import class_local_calc.*folder on PYTHONPATH"):
        calculator_class(path)
    assert sys.path == before and not (tmp_path / "imported").exists()
    monkeypatch.setenv("PYTHONPATH", ".")  # named explicitly: imported
    monkeypatch.delitem(sys.modules, path.split(".")[0], raising=False)
    assert calculator_class(path).__name__ == "Local" and sys.path == before
    monkeypatch.delitem(sys.modules, path.split(".")[0])


def test_misspelt_kwargs_and_retries_are_refused_before_any_job_naming_the_nearest():
    with pytest.raises(ConfigError) as refused:
        check("ase.calculators.emt.EMT", {"asap_cutoff": True, "bogus_kw": 1}, [{"asap_cutof": False}, {}])
    assert str(refused.value).splitlines() == [
        f"{LABEL}.kwargs: 'bogus_kw' is not a keyword argument of ase.calculators.emt.EMT; expected one of "
        "asap_cutoff, atoms, directory, ignore_bad_restart_file, label, parameters, restart",
        f"{LABEL}.retries[0]: 'asap_cutof' is not a keyword argument of ase.calculators.emt.EMT; did you mean "
        "asap_cutoff?"]


VASP = {"xc": "PBE", "encut": 520, "kpts": [4, 4, 4], "ibrion": -1, "nsw": 0, "ismear": 0, "sigma": 0.05,
        "command": "srun vasp_std", "directory": ".", "txt": "vasp.out", "setups": {"Cu": "_pv"}, "gamma": True,
        "custom": {"ml_lmlff": True}, "ediff": 1e-6, "lreal": "Auto", "ncore": 4, "prec": "Accurate", "lwave": False}


@pytest.mark.parametrize("calculator, kwargs", [
    ("ase.calculators.vasp.Vasp", VASP),
    ("ase.calculators.espresso.Espresso", {"input_data": {"system": {"ecutwfc": 40}}, "kpts": (3, 3, 3),
                                           "pseudopotentials": {"Cu": "Cu.UPF"}, "profile": None, "tprnfor": True}),
    ("ase.calculators.emt.EMT", {"asap_cutoff": True}),
    ("ase.calculators.lj.LennardJones", {"sigma": 2.3, "epsilon": 0.4, "rc": 6.0, "smooth": True}),
    ("ase.calculators.lammpslib.LAMMPSlib", {"lmpcmds": ["pair_style eam"], "atom_types": {"Cu": 1},
                                             "log_file": "lammps.log", "keep_alive": True}),
    ("ase.calculators.lammpsrun.LAMMPS", {"pair_style": "eam", "pair_coeff": ["* * Cu.eam"], "command": "lmp"}),
    ("ase.calculators.psi4.Psi4", {"method": "b3lyp", "basis": "6-31g", "memory": "1GB", "num_threads": 2}),
    ("ase.calculators.gaussian.Gaussian", {"method": "B3LYP", "basis": "6-31G", "scf": "qc"}),
])
def test_the_settings_people_label_with_are_accepted(calculator, kwargs):
    assert settings_problems(calculator, kwargs, [kwargs]) == []


@pytest.mark.parametrize("calculator, typo, message", [
    ("ase.calculators.vasp.Vasp", "encutt", "'encutt' is not a keyword argument of ase.calculators.vasp.Vasp; "
     "did you mean encut? (an INCAR tag that ASE does not know goes in custom: {TAG: value})"),
    ("ase.calculators.vasp.Vasp", "ENCUT", "did you mean encut?"),  # ASE would write a second ENCUT
    ("ase.calculators.lj.LennardJones", "rcut", "did you mean rc?"),
    ("ase.calculators.lammpslib.LAMMPSlib", "lmpcmd", "did you mean lmpcmds?"),
    ("ase.calculators.emt.EMT", "bogus_kw", "'bogus_kw' is not a keyword argument of ase.calculators.emt.EMT"),
])
def test_a_misspelt_keyword_is_refused_with_the_nearest(calculator, typo, message):
    [kwargs, retry] = settings_problems(calculator, {typo: 1}, [{}, {typo: 2}])
    assert kwargs.startswith("kwargs: ") and message in kwargs and retry == kwargs.replace("kwargs", "retries[1]", 1)


def test_where_the_names_cannot_be_known_any_is_accepted():
    """Espresso passes its **kwargs on as its input file's settings, Gaussian writes its parameters out."""
    assert settings_problems("ase.calculators.espresso.Espresso", {"bogus_kw": 1}) == []
    assert settings_problems("ase.calculators.gaussian.Gaussian", {"bogus_kw": 1}) == []
