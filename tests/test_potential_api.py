"""aenet-python's TorchANNPotential surface: cohesive energies, model files and their metadata, history export,
energies files in TrainOut, predict's config, resume with no epochs, and TorchTrainingConfig's signature and
errors."""
import csv
import inspect
import json
import math

import numpy as np
import pytest

from aenet_core.structure import Structure
from aenet_core.torch_training import (SGD, Adam, TorchTrainingConfig, TrainingMethod,
                                       export_history, load_model, save_model)
from aenet_core.training.loop import TrainingRun
from aenet_core.training.trainout import Energies
from training_setup import REFERENCES, config, potential

# aenet-python's TorchTrainingConfig fields, in order, with their documented defaults.
REFERENCE_DEFAULTS = {
    "iterations": 100, "method": None, "testpercent": 10, "seed": None, "split_seed": None, "force_weight": 0.0,
    "force_fraction": 1.0, "sampling_policy": "uniform", "force_sampling": "random", "force_resample_num_epochs": 0,
    "force_min_structures_per_epoch": 1, "force_scale_unbiased": False, "cache_features": False,
    "cache_feature_max_entries": 1024, "cache_neighbors": False, "cache_neighbor_max_entries": 512,
    "cache_force_triplets": False, "cache_force_triplet_max_entries": 256, "cache_persist_dir": None,
    "cache_scope": "all", "cache_warmup": False, "memory_mode": "gpu", "max_energy": None, "max_forces": None,
    "save_energies": False, "save_forces": False, "timing": False, "device": None, "precision": "auto",
    "atomic_energies": None, "normalize_features": True, "normalize_energy": True, "num_workers": 0,
    "prefetch_factor": 2, "persistent_workers": True, "feature_stats": None, "E_shift": None, "E_scaling": None,
    "show_progress": True, "show_batch_progress": False, "checkpoint_dir": "checkpoints", "checkpoint_interval": 1,
    "max_checkpoints": None, "save_best": True, "use_scheduler": False, "scheduler_patience": 10,
    "scheduler_factor": 0.5, "scheduler_min_lr": 1e-6,
}


def same_history(a, b) -> bool:
    """Equal per-epoch lists (NaN equal to NaN) and the same early stop."""
    if set(a) != set(b):
        return False
    return all(a[k] == b[k] if not isinstance(a[k], list) else
               len(a[k]) == len(b[k]) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a[k], b[k]))
               for k in a)


@pytest.fixture(scope="module")
def trained(cuau, tmp_path_factory):
    """A potential trained 3 epochs with checkpoints and energies files: (potential, TrainOut, folder)."""
    folder = tmp_path_factory.mktemp("trained")
    p = potential()
    out = p.train(structures=cuau, config=config(iterations=3, checkpoint_dir=str(folder / "checkpoints"),
                                                 save_energies=True), output_dir=folder)
    return p, out, folder


def test_config_signature_is_the_references_then_ours():
    parameters = list(inspect.signature(TorchTrainingConfig).parameters.values())
    assert [(p.name, p.default) for p in parameters[:len(REFERENCE_DEFAULTS)]] == list(REFERENCE_DEFAULTS.items())
    assert all(p.default is not inspect.Parameter.empty for p in parameters)
    default = TorchTrainingConfig()
    assert isinstance(default.testpercent, int) and default.testpercent == 10
    assert isinstance(default.method, Adam) and isinstance(default.method, TrainingMethod)
    assert TorchTrainingConfig(testpercent=12.5).testpercent == 12.5  # a float percentage stays accepted


def test_training_methods_name_themselves_and_their_parameters():
    assert (Adam().method_name, SGD().method_name) == ("adam", "sgd")
    assert SGD(lr=0.1, momentum=0.9).to_params_dict() == {"lr": 0.1, "batchsize": 32, "momentum": 0.9,
                                                          "weight_decay": 0.0}
    with pytest.raises(NotImplementedError):
        TrainingMethod().method_name


@pytest.mark.parametrize("field,value,facts", [
    ("testpercent", 150, ["testpercent", "150", "0", "100"]),
    ("force_weight", 1.5, ["force_weight", "1.5", "[0, 1]"]),
    ("force_fraction", -0.1, ["force_fraction", "-0.1", "[0, 1]"]),
    ("memory_mode", "disk", ["memory_mode", "'disk'", "'cpu'", "'gpu'"]),
    ("precision", "half", ["precision", "'half'", "'auto'", "'float32'", "'float64'"]),
    ("iterations", -1, ["iterations", "-1", ">= 0"]),
    ("seed", 1.5, ["seed", "1.5", "int"]),
    ("prefetch_factor", 0, ["prefetch_factor", "0", ">= 1"]),
])
def test_config_errors_are_value_errors_with_the_references_facts(field, value, facts):
    with pytest.raises(ValueError) as error:  # aenet-python's type for each of these
        TorchTrainingConfig(**{field: value})
    assert all(fact in str(error.value) for fact in facts), str(error.value)


def test_mixed_memory_is_refused_at_construction_and_at_train(cuau):
    with pytest.raises(NotImplementedError, match="memory_mode='mixed'"):
        TorchTrainingConfig(memory_mode="mixed")
    cfg = config(iterations=1)
    cfg.memory_mode = "mixed"
    p = potential()
    before = {k: v.clone() for k, v in p.model.state_dict().items()}
    with pytest.raises(NotImplementedError, match="memory_mode='mixed'"):
        p.train(structures=cuau, config=cfg)
    assert all(np.array_equal(before[k], v) for k, v in p.model.state_dict().items())


def test_cohesive_energy_subtracts_the_atomic_references(trained, cuau):
    p, _, _ = trained
    predicted = p.predict(cuau[:3])
    for s, total, cohesive in zip(cuau[:3], predicted.total_energy, predicted.cohesive_energy):
        labelled = Structure(s.positions, s.species, energy=total, cell=s.cell, pbc=s.pbc)
        assert p.cohesive_energy(labelled) == pytest.approx(cohesive, rel=0, abs=1e-10)
        by_hand = s.energy - sum(REFERENCES[x] for x in s.species)
        assert p.cohesive_energy(s) == pytest.approx(by_hand, rel=0, abs=1e-12)
        assert p.cohesive_energy(s, {"Cu": 0.0}) == s.energy  # a species without a reference counts 0 eV
    with pytest.raises(ValueError, match="energy"):
        p.cohesive_energy(Structure(cuau[0].positions, cuau[0].species, cell=cuau[0].cell, pbc=cuau[0].pbc))


def test_save_model_load_model_round_trip(trained, cuau, tmp_path):
    p, _, _ = trained
    assert p.metadata is None  # not loaded from a file
    save_model(p, tmp_path / "model.pt", optimizer=p_optimizer(p), extra_metadata={"note": "round trip"})
    loaded, metadata = load_model(tmp_path / "model.pt")
    assert metadata is loaded.metadata
    assert loaded.predict(cuau[:4]).total_energy == p.predict(cuau[:4]).total_energy
    assert metadata["extra_metadata"] == {"note": "round trip"} and metadata["architecture"] == p.arch
    assert same_history(metadata["training_history"], p.history) and same_history(loaded.history, p.history)
    assert metadata["training_config"] == p.training_config.to_dict()
    assert metadata["atomic_energies"] == pytest.approx(REFERENCES)
    assert metadata["normalization"]["E_scaling"] == float(p.model.E_scaling)
    assert metadata["normalization"]["feature_mean"] == p.model.feature_mean.tolist()
    assert set(metadata["optimizer_state_dict"]) == {"state", "param_groups"}
    assert "model_state_dict" not in metadata and "run_state" not in metadata
    other = config(iterations=9)
    save_model(p, tmp_path / "other.pt", training_config=other)
    assert load_model(tmp_path / "other.pt")[1]["training_config"]["iterations"] == 9


def p_optimizer(p):
    import torch

    return torch.optim.SGD(p.model.parameters(), lr=0.1)


def test_export_history_round_trips_json_and_csv(trained, tmp_path):
    p, _, _ = trained
    export_history(p.history, tmp_path / "out" / "history.json", tmp_path / "out" / "history.csv")
    stored = json.loads((tmp_path / "out" / "history.json").read_text())
    for key, values in p.history.items():
        if isinstance(values, list):
            assert [math.nan if v is None else v for v in stored[key]] == pytest.approx(values, nan_ok=True)
    with open(tmp_path / "out" / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    # the learning rate and epoch time columns carry the history's values (aenet-python's are always NaN)
    assert [float(r["learning_rate"]) for r in rows] == p.history["learning_rate"]
    assert [float(r["epoch_time"]) for r in rows] == pytest.approx(p.history["epoch_time"])
    assert [float(r["train_energy_rmse"]) for r in rows] == pytest.approx(p.history["train_energy_rmse"])


def test_trainout_energies_are_the_energies_files(trained, cuau):
    p, out, folder = trained
    assert isinstance(out.energies, Energies)
    train, test = out.energies.energies_train, out.energies.energies_test
    assert list(train.columns) == ["Ref(eV)", "ANN(eV)", "#atoms", "Ref(eV/atom)", "ANN(eV/atom)",
                                   "Ref-ANN(eV/atom)", "Cost-Func", "#Cu", "#Au", "Path-of-input-file"]
    lines = (folder / "energies.train.0").read_text().splitlines()[1:]
    assert len(train) == len(lines) and len(test) == len((folder / "energies.test.0").read_text().splitlines()) - 1
    for row, line in zip(train.itertuples(index=False), lines):
        words = line.split()
        assert list(row[:7]) == [float(w) for w in words[:7]] and row[-1] == words[-1]
    # the ANN column is the potential's prediction of the named structures
    by_name = {s.name: s for s in cuau}
    named = [by_name[name] for name in train["Path-of-input-file"]]
    np.testing.assert_allclose(train["ANN(eV)"], p.predict(named).total_energy, rtol=1e-6)
    assert train["Ref(eV)"].tolist() == pytest.approx([s.energy for s in named], rel=1e-6)
    assert (train["#Cu"] + train["#Au"]).tolist() == train["#atoms"].tolist()


def test_train_x_energies_files_parse_too(tmp_path):
    path = tmp_path / "energies.train.0"
    path.write_text("#  Ref(eV)        ANN(eV)      #atoms  Ref(eV/atom)   ANN(eV/atom) Ref-ANN(eV/atom)    "
                    "ANN error   #Ti  #O    Path of input file\n"
                    "  -1.555215E+01  -1.566766E+01    24  -6.480063E-01  -6.528190E-01   4.812691E-03   "
                    "5.568170E-03     8   16 ../TiO2-xsf/structure0001.xsf\n")
    table = Energies(path).energies_train
    assert list(table.columns[-4:]) == ["Cost-Func", "#Ti", "#O", "Path-of-input-file"]
    assert table["#atoms"][0] == 24 and table["Path-of-input-file"][0] == "../TiO2-xsf/structure0001.xsf"


def test_predict_paths_and_config_batch_size(trained, cuau):
    p, _, _ = trained

    class PredictionConfig:  # what predict reads of aenet-python's PredictionConfig
        batch_size = 2

    out = p.predict(cuau[:5], False, PredictionConfig())
    assert out.paths == out.structure_paths == [s.name or f"structure_{i:06d}" for i, s in enumerate(cuau[:5])]
    assert out.total_energy == pytest.approx(p.predict(cuau[:5], batch_size=5).total_energy, rel=1e-12)


def test_resume_with_no_epochs_returns_the_history_of_the_run_it_resumes(trained, cuau, tmp_path, monkeypatch):
    p, _, folder = trained
    final = potential()
    again = final.train(structures=cuau, config=config(iterations=0),
                        resume_from=folder / "checkpoints" / "checkpoint_epoch_0002.pt")
    assert same_history(final.history, p.history) and again.errors.equals(trained[1].errors)
    # from the saved model the history is already final: no pass runs and nothing changes
    p.save(tmp_path / "model.pt")
    passes = []
    monkeypatch.setattr(TrainingRun, "evaluate", lambda self, *args: passes.append(args))
    saved = potential()
    saved.train(structures=cuau, config=config(iterations=0), resume_from=tmp_path / "model.pt")
    assert passes == [] and same_history(saved.history, p.history)
    assert all(np.array_equal(a, b) for a, b in zip(saved.model.state_dict().values(),
                                                     p.model.state_dict().values()))


def test_resume_from_a_saved_model_continues_the_uninterrupted_history(cuau, tmp_path):
    whole = potential()
    whole.train(structures=cuau, config=config(iterations=4))
    first = potential()
    first.train(structures=cuau, config=config(iterations=2))
    first.save(tmp_path / "model.pt")
    resumed = potential()
    resumed.train(structures=cuau, config=config(iterations=2), resume_from=tmp_path / "model.pt")
    measured = [k for k in whole.history if not k.endswith("_time")]  # timings differ from run to run
    assert same_history({k: resumed.history[k] for k in measured}, {k: whole.history[k] for k in measured})


def test_to_aenet_ascii_returns_the_files_and_keeps_the_models_statistics(trained, cuau, tmp_path):
    from aenet_core.export import read_nn_ascii

    p, _, _ = trained
    paths = p.to_aenet_ascii(tmp_path, prefix="pot", structures=cuau[:6])
    assert paths == [tmp_path / "pot.Cu.nn.ascii", tmp_path / "pot.Au.nn.ascii"] and all(f.is_file() for f in paths)
    for index, path in enumerate(paths):
        written = read_nn_ascii(path)
        assert np.array_equal(written.sf_avg, p.model.feature_mean[index].numpy())  # never the structures' mean
        species = p.descriptor.species[index]
        features = np.concatenate([p.descriptor.forward_from_positions(s.positions, s.species, s.cell, s.pbc)
                                   .numpy()[[x == species for x in s.species]] for s in cuau[:6]])
        np.testing.assert_array_equal(written.sf_min, features.min(axis=0))
        np.testing.assert_array_equal(written.sf_max, features.max(axis=0))


def test_predict_timing_when_the_config_asks(trained, cuau):
    p, _, _ = trained

    class PredictionConfig:  # aenet-python's timing flag
        batch_size, timing = 2, True

    assert p.predict(cuau[:5]).timing is None
    for forces in (False, True):
        timing = p.predict(cuau[:5], forces, PredictionConfig()).timing
        assert set(timing) == {"featurization", "energy_eval", "force_eval", "total"}
        assert all(len(values) == 5 for values in timing.values())
        assert min(timing["featurization"]) > 0 and min(timing["energy_eval"]) > 0
        assert timing["total"] == pytest.approx(np.add(timing["featurization"], timing["energy_eval"]))
        # forces come from the energy pass: not timed apart, so NaN; 0.0 when none were computed
        assert all(math.isnan(t) for t in timing["force_eval"]) if forces else timing["force_eval"] == [0.0] * 5
    # a batch's structures share its time equally
    assert timing["featurization"][0] == timing["featurization"][1] != timing["featurization"][4]


def test_net_is_the_models_networks_and_zero_weights_predict_the_references(cuau):
    import torch

    p = potential()
    p.train(structures=cuau[:4], config=config(iterations=0, normalize_energy=False))
    assert p.net is p.model.networks and len(p.net.functions) == 2
    with torch.no_grad():
        for network in p.net.functions:
            for parameter in network.parameters():
                parameter.zero_()
    # zero network output: the total energy is the atomic reference energies' sum
    expected = [sum(REFERENCES[x] for x in s.species) for s in cuau[:4]]
    assert p.predict(cuau[:4]).total_energy == pytest.approx(expected, rel=0, abs=1e-12)


def test_predict_dataset_names_what_the_dataset_lacks(trained):
    import torch

    p, _, _ = trained

    class FeaturesOnly(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return {"features": torch.zeros(1, 3)}

    for forces in (False, True):
        with pytest.raises(ValueError, match=r"predict_dataset requires a dataset .*get_structure.*FeaturesOnly"):
            p.predict_dataset(FeaturesOnly(), eval_forces=forces)


def test_export_history_takes_any_history_of_per_epoch_lists(tmp_path):
    history = {"train_energy_rmse": [1.0, 0.8, 0.6], "test_force_rmse": [math.nan, 0.6, 0.5],
               "learning_rates": [1e-3, 1e-3, 5e-4]}  # no MAE: aenet-python's example history
    export_history(history, tmp_path / "h.json", tmp_path / "h.csv")
    stored = json.loads((tmp_path / "h.json").read_text())
    assert stored == {"train_energy_rmse": [1.0, 0.8, 0.6], "test_force_rmse": [None, 0.6, 0.5],
                      "learning_rates": [1e-3, 1e-3, 5e-4], "stopped_early": None}
    with open(tmp_path / "h.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:2] == ["epoch", "train_energy_rmse"] and len(rows) == 3
    assert [float(r["train_energy_rmse"]) for r in rows] == [1.0, 0.8, 0.6]
    assert all(math.isnan(float(r["test_energy_rmse"])) for r in rows)  # absent from the history
    with pytest.raises(ValueError, match=r"history\['learning_rates'\] has 2 values, expected 3"):
        export_history({**history, "learning_rates": [1e-3, 1e-3]}, tmp_path / "bad.json")
