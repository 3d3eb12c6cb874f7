"""The command-line entry point the workflow rules call."""
import numpy as np
import pytest

from aenet_core.cli import main
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
        main(["featurize", str(data), "--output", str(tmp_path / "f.npz"), "--species", "Cu",
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
    assert len(db) == 8 and db.has_persisted_derivatives and db.atomic_energies == fitted.atomic_energies
    assert db.descriptor.min_cutoff == DEFAULT_MIN_CUTOFF  # not given: the descriptor's own default
    split_path = tmp_path / "split.json"
    main(["split", str(db_path), "--output", str(split_path), "--testpercent", "25", "--split-seed", "3"])
    split = Split.load(split_path)
    assert len(split.test) == 2 and split.split_seed == 3
    split.check(db)
    with pytest.raises(SystemExit, match="SYMBOL=ENERGY"):
        main(["reference-energies", str(data), "--output", str(fixed), "--fixed", "Cu:-0.5"])
    main(["reference-energies", str(data), "--output", str(fixed), "--method", "fixed", "--fixed", "Cu=-0.5",
          "Au=-0.25"])
    assert ReferenceEnergies.load(fixed).method == "fixed"
    with pytest.raises(ValueError, match="no value for Au"):
        main(["reference-energies", str(data), "--output", str(fixed), "--method", "fixed", "--fixed", "Cu=-0.5"])


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
        main(build)
    assert not db_path.exists()
    main([*build, "--min-distance", "0.2"])
    assert len(HDF5StructureDataset(None, db_path, mode="load")) == 4
    with pytest.raises(ValueError, match=r"PlausibilityLimits\.max_pairs_per_atom must be a finite number > 0"):
        main([*build, "--max-pairs-per-atom", "0"])
    refs = ["reference-energies", str(data), str(tmp_path / "strong.xsf"), "--output", str(tmp_path / "refs.json")]
    with pytest.raises(ValueError, match=r"strong\.xsf \(frame 0\): force on atom 0 \(\w+\) along z is 50\.0 eV/Å; "
                                         r"a component beyond ±20 eV/Å"):
        main([*refs, "--force-limit", "20"])
    main(refs)
    assert ReferenceEnergies.load(tmp_path / "refs.json").metadata["n_samples_used"] == 4
