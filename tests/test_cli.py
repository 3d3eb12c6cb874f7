"""The command-line entry point the workflow rules call."""
import numpy as np
import pytest

from aenet_core.cli import main
from aenet_core.io import read_structures


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
