"""Data parallelism (aenet_core.training.distributed): processes that share each batch train exactly as one
process with the same batch size, through checkpoints and resumes, from the Python API and the command line."""
import json
import math
import shutil
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist

from aenet_core.committee import train_member
from aenet_core.example_data import make_cuau_structures
from aenet_core.split import Split
from aenet_core.torch_training import Adam, StructureDataset, TorchANNPotential
from aenet_core.training import distributed
from aenet_core.training.distributed import DataParallel, DistributedSetupError, ShardedLoss, check_processes
from aenet_core.training.loss import EnergyForceLoss
from training_setup import MEMBER_ARCH, REFERENCES, cli_database, descriptor, member_config

gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                          reason="torch.distributed with gloo is not available")

# Batches of 4 from 9 training structures: the last batch holds one structure, so one process's share of it
# is empty; weighted structures, stresses, force subsets with the unbiased scale and error-weighted sampling
# (draws with replacement: a structure can be twice in a batch) all enter the loss.
SETTINGS = dict(method=Adam(mu=0.02, batchsize=4), force_weight=0.3, stress_weight=0.5, force_fraction=0.6,
                force_scale_unbiased=True, sampling_policy="error_weighted", checkpoint_interval=1, seed=5)


def dataset_and_split():
    structures = make_cuau_structures(12, seed=4)
    for k, structure in enumerate(structures):
        structure.weight = (0.5, 1.0, 2.0)[k % 3]
    dataset = StructureDataset(structures, descriptor(), atomic_energies=REFERENCES)
    return dataset, Split.create(dataset, 25, 2)


def train(member_dir, iterations):
    """A member of SETTINGS trained into ``member_dir`` (resumed when it has checkpoints); its potential."""
    dataset, split = dataset_and_split()
    potential = TorchANNPotential(MEMBER_ARCH, descriptor())
    config = member_config(**SETTINGS, iterations=iterations)
    summary = train_member(potential, member_dir, config, dataset, split, seed=5)
    assert summary["status"] == "completed", summary["error"]
    return potential


def group_member(device, tmp_path):
    """In each process of the group: a member trained 2 epochs straight, then a copy of it "killed" after its
    first epoch and resumed; each process writes its sampler's scores (every process's must be process 0's)."""
    rank = dist.get_rank()
    straight = train(tmp_path / "straight", 2)
    if rank == 0:
        shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
        for name in ("model.pt", "summary.json", "history.json", "history.csv", "checkpoints/checkpoint_epoch_0001.pt"):
            (tmp_path / "resumed" / name).unlink()
    dist.barrier()
    resumed = train(tmp_path / "resumed", 2)
    scores = {name: potential._run_state["sampler"]["scores"].tolist()
              for name, potential in (("straight", straight), ("resumed", resumed))}
    (tmp_path / f"scores_{rank}.json").write_text(json.dumps(scores))


def weights(path):
    return TorchANNPotential.from_file(path).model.state_dict()


def assert_same_weights(a, b, tolerance=1e-12):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=tolerance), (key, (a[key] - b[key]).abs().max())


def assert_same_history(a, b, tolerance=1e-12):
    for key in ("train_energy_rmse", "test_energy_rmse", "train_energy_mae", "train_force_rmse", "test_force_rmse",
                "train_stress_rmse", "test_stress_rmse", "learning_rate"):
        assert len(a[key]) == len(b[key]) and a[key], key
        for x, y in zip(a[key], b[key]):
            assert math.isclose(x, y, rel_tol=tolerance, abs_tol=tolerance), (key, a[key], b[key])


@pytest.mark.slow
@gloo
def test_two_processes_train_and_resume_as_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    single = train(one, 2)
    distributed.launch(group_member, 2, "cpu", two)
    for name in ("straight", "resumed"):
        member = two / name
        assert_same_weights(weights(one / "model.pt"), weights(member / "model.pt"))
        assert_same_history(json.loads((one / "history.json").read_text()),
                            json.loads((member / "history.json").read_text()))
        assert [p.name for p in sorted((member / "checkpoints").glob("*.pt"))] == [
            "checkpoint_epoch_0000.pt", "checkpoint_epoch_0001.pt"]
    # After one epoch, too: the first checkpoints hold the same weights.
    assert_same_weights(weights(one / "checkpoints/checkpoint_epoch_0000.pt"),
                        weights(two / "straight/checkpoints/checkpoint_epoch_0000.pt"))
    assert json.loads((two / "resumed/summary.json").read_text())["resumed_from"] == \
        "checkpoints/checkpoint_epoch_0000.pt"
    # Error-weighted sampling: every process's sampler ends where one process's does.
    expected = single._run_state["sampler"]["scores"]
    assert not torch.all(expected == 1)  # the scores did change from their start
    for rank in (0, 1):
        for scores in json.loads((two / f"scores_{rank}.json").read_text()).values():
            assert torch.allclose(torch.tensor(scores, dtype=torch.float64), expected, rtol=1e-12, atol=0)
    assert not list(two.glob("**/*.tmp*"))  # no partial file from a second writer


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:no atomic reference energy:UserWarning")
@gloo
@pytest.mark.parametrize("force_weight", ["force_weight: 0.2, ", ""])  # "": the data's default, in every process
def test_train_member_nproc_on_the_command_line(tmp_path, capfd, force_weight):
    from aenet_core.cli import main

    db, split = cli_database(tmp_path, 7)
    settings = tmp_path / "settings.yaml"
    settings.write_text("architecture: [[4, tanh]]\ntraining: {iterations: 1, method: {name: adam, mu: 0.01, "
                        f"batchsize: 3}}, {force_weight}checkpoint_interval: 1}}\n")
    member = ["train-member", "--database", str(db), "--split", str(split), "--member-index", "0", "--seed", "4",
              "--settings", str(settings), "--threads", "1", "--output-dir"]
    main([*member, str(tmp_path / "one")])
    capfd.readouterr()
    main([*member, str(tmp_path / "two"), "--nproc", "2"])
    out, err = capfd.readouterr()
    assert out.count("member 0 (seed 4): final RMSE") == 1  # printed by process 0 alone
    assert err.count("epoch: 1/1 (100 %)") == 1  # progress lines, too
    assert err.count("training.force_weight is not set") == (0 if force_weight else 1)
    assert_same_weights(weights(tmp_path / "one/model.pt"), weights(tmp_path / "two/model.pt"))
    summary = json.loads((tmp_path / "two/summary.json").read_text())
    assert summary["status"] == "completed" and summary["metrics"]["epochs_recorded"] == 1


def test_a_share_of_each_batch_per_process():
    parallel = object.__new__(DataParallel)
    parallel.size = 3
    batch, forced = (4, 8, 1, 5, 1, 9, 2), (8, 1, 1)
    shares = []
    for rank in range(3):
        parallel.rank = rank
        shares.append(parallel.shard(batch, forced))
    assert shares == [((8, 4, 2), (8,)), ((1, 5), (1,)), ((1, 9), (1,))]
    assert sorted(i for share, _ in shares for i in share) == sorted(batch)


def test_a_lone_process_sharded_loss_is_the_loss():
    """One process of a group of one: the surrogate's value and gradient are the loss's (weights, stresses
    and the unbiased force scale included)."""
    from aenet_core.data.batch import FeatureSource

    dataset, split = dataset_and_split()
    potential = TorchANNPotential(MEMBER_ARCH, descriptor())
    model = potential.model.double()
    indices = split.train[:5]
    batch = FeatureSource(dataset).batch(indices, lambda i: i in indices[:3])
    labelled = sum(dataset.atom_counts(indices))
    lone = object.__new__(DataParallel)
    lone.device, lone.rank, lone.size = torch.device("cpu"), 0, 1
    lone.all_reduce = lambda tensor: tensor
    loss = EnergyForceLoss(0.3, True, 0.5)
    results = []
    for candidate in (loss, ShardedLoss(loss, lone)):
        model.zero_grad()
        value, metrics = candidate.of_batch(model, batch, labelled, train=True)
        value.backward()
        results.append((value.detach(), metrics, [p.grad.clone() for p in model.parameters()]))
    (value, metrics, grads), (sharded_value, sharded_metrics, sharded_grads) = results
    assert torch.isclose(value, sharded_value, rtol=1e-13, atol=0)
    for key in ("energy_rmse", "energy_mae", "force_rmse", "stress_rmse"):
        assert math.isclose(getattr(metrics, key), getattr(sharded_metrics, key), rel_tol=1e-13), key
    assert all(torch.allclose(g, h, rtol=1e-12, atol=1e-15) for g, h in zip(grads, sharded_grads))


@pytest.mark.parametrize("nproc, device, message", [
    (0, "cpu", "--nproc must be at least 1"),
    (2, "cuda:1", "give --device cuda or cpu, not cuda:1"),
])
def test_processes_that_cannot_start_are_refused(nproc, device, message):
    with pytest.raises(DistributedSetupError, match=message):
        check_processes(nproc, device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")
def test_cuda_processes_need_cuda():
    with pytest.raises(DistributedSetupError, match="torch finds no CUDA GPU"):
        check_processes(2, "cuda")


def test_under_torchrun_nproc_is_left_out(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(DistributedSetupError, match="torchrun started this process in a group of 4"):
        distributed.launch(print, 2, "cpu")


def test_data_parallel_training_needs_a_seed():
    class Run:
        config = replace(member_config(), seed=None)

    with pytest.raises(ValueError, match="needs TorchTrainingConfig.seed"):
        object.__new__(DataParallel).share(Run())


def test_a_started_process_failure_is_its_message():
    report = ('\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n'
              '  File "x.py", line 3, in f\n    raise ProcessFailed("member 0 failed: ValueError: bad\\nsecond")\n'
              'aenet_core.training.distributed.ProcessFailed: member 0 failed: ValueError: bad\nsecond line\n')
    assert distributed._error_message(report) == "member 0 failed: ValueError: bad\nsecond line"
    assert distributed._error_message("Traceback:\n  File x\nKeyError: 'a'") == "KeyError: 'a'"


def fails_in_process_0(device):
    if dist.get_rank() == 0:
        raise ValueError("no such data")
    dist.barrier()  # fails once process 0 is gone


@pytest.mark.slow
@gloo
def test_the_failure_of_process_0_is_the_one_reported():
    with pytest.raises(distributed.ProcessFailed, match=r"^process 0 of 2: ValueError: no such data$"):
        distributed.launch(fails_in_process_0, 2, "cpu")
