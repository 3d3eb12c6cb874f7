"""The model file: plain data only, older schemas, refused pickles, convert-model."""
import os
import pickle
import shlex
import shutil

import numpy as np
import pytest
import torch

from aenet_core.calculator import AenetCalculator
from aenet_core.cli import main, run
from aenet_core.committee import TorchCommitteePotential, train_member
from aenet_core.data import StructureDataset
from aenet_core.model.checkpoint import ModelFileError
from aenet_core.split import Split
from aenet_core.torch_training import TorchANNPotential
from training_setup import MEMBER_ARCH, REFERENCES, config, descriptor, member_config, potential


def test_schema_1_0_model_files_load_with_their_statistics_for_every_species(cuau, tmp_path):
    p = potential()
    p.train(structures=cuau, config=config(iterations=1))
    p.save(tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["schema_version"] = "1.0"  # one (F,) mean/std row shared by all species
    for key in ("feature_mean", "feature_std"):
        payload["model_state_dict"][key] = payload["model_state_dict"][key][0].clone()
    torch.save(payload, tmp_path / "old.pt")
    old = TorchANNPotential.from_file(tmp_path / "old.pt")
    assert old.model.feature_mean.shape == (2, p.descriptor.n_features)
    assert old.predict(cuau[:3]).total_energy == p.predict(cuau[:3]).total_energy
    payload["schema_version"] = "0.9"
    torch.save(payload, tmp_path / "older.pt")
    with pytest.raises(ValueError, match="model schema '0.9'"):
        TorchANNPotential.from_file(tmp_path / "older.pt")


class Exploit:
    """Unpickling this runs a shell command that creates ``marker``: what a hostile model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def write_exploit(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "aenet_core.model", "schema_version": "2.0", "model_state_dict": Exploit(marker)}, path)


@pytest.fixture(scope="module")
def committee_dir(trained_committee):
    return trained_committee[2]


def _resume(path, cuau):
    potential().train(structures=cuau, config=config(iterations=1), resume_from=path)


def _member_rerun(committee, cuau):
    """Member 0 rerun as ``trained_committee`` trained it, so that its checkpoints count as its own, finds a
    (hostile) one after its three and resumes from it."""
    dataset = StructureDataset(cuau, descriptor(), atomic_energies=REFERENCES)
    summary = train_member(TorchANNPotential(MEMBER_ARCH, descriptor()), committee / "member_000",
                           member_config(iterations=4, checkpoint_interval=1), dataset, Split.create(dataset, 25, 2),
                           seed=11, device="cpu")
    raise ModelFileError(summary["error"])


LOADERS = {  # (file to poison, how the project would open it)
    "from_file": ("member_000/model.pt", lambda committee, cuau: TorchANNPotential.from_file(
        committee / "member_000/model.pt")),
    "best model": ("member_000/checkpoints/best_model.pt", lambda committee, cuau: TorchANNPotential.from_file(
        committee / "member_000/checkpoints/best_model.pt")),
    "resume_from": ("member_000/checkpoints/checkpoint_epoch_0000.pt", lambda committee, cuau: _resume(
        committee / "member_000/checkpoints/checkpoint_epoch_0000.pt", cuau)),
    "committee": ("member_000/model.pt", lambda committee, cuau: TorchCommitteePotential.from_directory(committee)),
    "calculator, model": ("member_000/model.pt", lambda committee, cuau: AenetCalculator(
        committee / "member_000/model.pt")),
    "calculator, committee": ("member_000/model.pt", lambda committee, cuau: AenetCalculator(committee)),
    "cli export": ("member_000/model.pt", lambda committee, cuau: run(
        ["export", str(committee), "--output-dir", str(committee / "ascii")])),
    "cli convert-model": ("member_000/model.pt", lambda committee, cuau: run(
        ["convert-model", str(committee / "member_000/model.pt"), str(committee / "converted.pt")])),
    "member resume": ("member_000/checkpoints/checkpoint_epoch_0003.pt", _member_rerun),
}


@pytest.mark.parametrize("loader", LOADERS)
def test_no_loading_path_runs_a_hostile_pickle(loader, committee_dir, cuau, tmp_path):
    committee = tmp_path / "run"
    shutil.copytree(committee_dir, committee)
    target, load = LOADERS[loader]
    marker = tmp_path / "marker"
    write_exploit(committee / target, marker)
    with pytest.raises(ModelFileError, match=r"refused, it holds Python objects.*posix\.system"):
        load(committee, cuau)
    assert not marker.exists() and (committee / target).exists()  # refused and kept, never run or removed


def test_a_hostile_persistent_cache_file_is_recomputed_not_run(cuau, tmp_path):
    settings = dict(iterations=1, cache_features=True, cache_persist_dir=str(tmp_path / "cache"))
    first = potential()
    first.train(structures=cuau, config=config(**settings))
    files = sorted((tmp_path / "cache").rglob("*.pt"))
    marker = tmp_path / "marker"
    write_exploit(files[0], marker)
    again = potential()
    with pytest.warns(UserWarning, match="unreadable cache file.*computing it again"):
        again.train(structures=cuau, config=config(**settings))
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    torch.load(files[0], weights_only=True)  # rewritten as plain data


def as_schema_1_1(payload: dict) -> dict:
    """What aenet_core 0.1 wrote: no format key, torch's version object, the NumPy state with its array."""
    old = {k: v for k, v in payload.items() if k != "format"}
    old.update(schema_version="1.1", torch_version=torch.__version__)
    if old["run_state"] is not None:
        state = dict(old["run_state"]["rng"]["numpy"])
        old["run_state"]["rng"]["numpy"] = (state["bit_generator"], state["keys"].numpy().astype(np.uint32),
                                            state["position"], state["has_gauss"], state["cached_gaussian"])
    return old


def test_files_of_the_previous_version_load_safely_resume_exactly_and_convert(cuau, tmp_path):
    settings = dict(force_weight=0.3, force_fraction=0.5, force_resample_num_epochs=1, use_scheduler=True,
                    scheduler_patience=0)
    whole = potential()
    whole.train(structures=cuau, config=config(iterations=4, **settings))
    potential().train(structures=cuau, config=config(iterations=2, checkpoint_dir=str(tmp_path), **settings))
    payload = torch.load(tmp_path / "checkpoint_epoch_0001.pt", weights_only=True)
    assert payload["format"] == "aenet_core.model" and payload["schema_version"] == "2.0"
    legacy = tmp_path / "legacy.pt"
    torch.save(as_schema_1_1(payload), legacy)
    with pytest.raises(pickle.UnpicklingError):  # not loadable by the plain weights-only loader
        torch.load(legacy, weights_only=True)
    resumed = potential()
    resumed.train(structures=cuau, config=config(iterations=2, **settings), resume_from=legacy)
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    main(["convert-model", str(legacy), str(tmp_path / "converted.pt")])
    converted = torch.load(tmp_path / "converted.pt", weights_only=True)
    assert converted["schema_version"] == "2.0" and isinstance(converted["run_state"]["rng"]["numpy"], dict)
    assert TorchANNPotential.from_file(tmp_path / "converted.pt").predict(cuau[:2]).total_energy == \
        TorchANNPotential.from_file(legacy).predict(cuau[:2]).total_energy


def test_checkpoints_hold_only_plain_data(cuau, tmp_path):
    potential().train(structures=cuau, config=config(iterations=1, checkpoint_dir=str(tmp_path), save_best=True,
                                                     force_weight=0.2, sampling_policy="error_weighted",
                                                     use_scheduler=True))
    for path in (tmp_path / "checkpoint_epoch_0000.pt", tmp_path / "best_model.pt"):
        payload = torch.load(path, weights_only=True)
        assert payload["run_state"]["scheduler"] is not None and payload["run_state"]["forces"]["train"]


def test_foreign_and_damaged_model_files_name_the_file(tmp_path):
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ModelFileError, match=r"text\.pt: not a readable aenet_core model file"):
        TorchANNPotential.from_file(tmp_path / "text.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ModelFileError, match=r"list\.pt: not an aenet_core model file"):
        TorchANNPotential.from_file(tmp_path / "list.pt")
    torch.save({"format": "aenet_core.model", "schema_version": "2.0", "x": np.zeros(3, np.uint32)},
               tmp_path / "numpy.pt")
    with pytest.raises(ModelFileError, match=r"numpy\.pt: refused, a schema 2\.0 file holds NumPy arrays"):
        TorchANNPotential.from_file(tmp_path / "numpy.pt")
    torch.save({"format": "other", "schema_version": "2.0"}, tmp_path / "foreign.pt")
    with pytest.raises(ModelFileError, match=r"foreign\.pt: unsupported format 'other'"):
        TorchANNPotential.from_file(tmp_path / "foreign.pt")


def aenet_python_model_file(trained, path, normalize=True):
    """``trained`` written in aenet-python's model-file layout (its schema 1.0): layers named
    ``net.functions.i.Linear_Sp{i+1}_F{k}``, one feature mean and std for all species, the normalisation and the
    atomic energies beside the weights, its training configuration (which names options we removed)."""
    state = trained.model.state_dict()
    assert torch.equal(state["feature_mean"][0], state["feature_mean"][1])  # one row, as aenet-python keeps
    weights = {}
    for key, value in state.items():
        if key.startswith("networks.functions."):
            network, index, kind = key.split(".")[2:]
            weights[f"net.functions.{network}.Linear_Sp{int(network) + 1}_F{int(index) // 2 + 1}.{kind}"] = value
    scale = dict(E_shift=float(state["E_shift"]), E_scaling=float(state["E_scaling"]))
    torch.save({
        "schema_version": "1.0", "timestamp": "2025-01-01T00:00:00", "torch_version": "2.5.0", "device_hint": "cpu",
        "architecture": trained.arch, "descriptor_config": trained.descriptor.get_config(),
        "model_state_dict": weights, "optimizer_state_dict": None,
        "training_history": trained.history, "best_val_loss": 0.1,
        "training_config": {"iterations": 4, "force_resample_each_epoch": True},
        "normalization": {"normalize_features": normalize, "normalize_energy": True, **scale,
                          "feature_mean": state["feature_mean"][0].tolist(),
                          "feature_std": state["feature_std"][0].tolist()},
        "atomic_energies": REFERENCES, "extra_metadata": {"note": "theirs"}}, path)


def test_aenet_python_model_files_load_and_predict_what_they_were_trained_to(cuau, tmp_path):
    trained = potential()
    trained.train(structures=cuau, config=config(iterations=2, force_weight=0.2))
    aenet_python_model_file(trained, tmp_path / "theirs.pt")
    loaded = TorchANNPotential.from_file(tmp_path / "theirs.pt")
    expected, got = trained.predict(cuau[:4], eval_forces=True), loaded.predict(cuau[:4], eval_forces=True)
    assert np.allclose(got.total_energy, expected.total_energy, rtol=0, atol=1e-10)
    assert all(np.allclose(a, b, atol=1e-10) for a, b in zip(got.forces, expected.forces))
    assert loaded.training_config is None and loaded.metadata["extra_metadata"] == {
        "note": "theirs", "aenet_python_training_config": {"iterations": 4, "force_resample_each_epoch": True}}
    loaded.save(tmp_path / "ours.pt")  # and it is ours from then on
    again = TorchANNPotential.from_file(tmp_path / "ours.pt").predict(cuau[:4]).total_energy
    assert np.allclose(again, expected.total_energy, rtol=0, atol=1e-10)
    aenet_python_model_file(trained, tmp_path / "raw.pt", normalize=False)  # raw features: mean 0, std 1
    raw = TorchANNPotential.from_file(tmp_path / "raw.pt").model.state_dict()
    assert torch.equal(raw["feature_mean"], torch.zeros_like(raw["feature_mean"])) and raw["feature_std"].eq(1).all()
