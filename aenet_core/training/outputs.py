"""Files written after training: aenet ``energies.<split>.0`` tables and ``forces.<split>.0`` predictions."""
from pathlib import Path

from aenet_core.files import atomic_write


def write_prediction_files(potential, data, config, directory) -> dict:
    """``energies.<split>.0`` (``config.save_energies``) and ``forces.<split>.0`` (``save_forces``) of the
    train and test splits of ``data`` (a ``TrainingData``), in ``directory``; returns the energies files
    written, ``{split: path}``."""
    written = {}
    if not (config.save_energies or config.save_forces):
        return written
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for split, dataset, indices in (("train", data.train_set, data.train_idx), ("test", data.test_set, data.test_idx)):
        if not indices:
            continue
        structures = [dataset.get_structure(i) for i in indices]
        names = [dataset.get_structure_identifier(i) for i in indices]
        out = potential.predict(structures, eval_forces=config.save_forces)
        if config.save_energies:
            rows = [(n, s.species, s.energy, e) for n, s, e in zip(names, structures, out.total_energy)]
            written[split] = directory / f"energies.{split}.0"
            write_energies(written[split], rows, potential.descriptor.species, float(potential.model.E_scaling))
        if config.save_forces:
            rows = [(n, s.species, s.positions, s.forces, f) for n, s, f in zip(names, structures, out.forces)]
            write_forces(directory / f"forces.{split}.0", rows)
    return written


def write_energies(path, rows, species, E_scaling: float) -> None:
    """An aenet ``energies.<split>.0`` table.

    ``rows``: (identifier, species list, reference total energy, predicted total energy) per structure.
    Columns: Ref(eV) ANN(eV) #atoms Ref(eV/atom) ANN(eV/atom) Ref-ANN(eV/atom) Cost-Func, the atom
    count of each species, then the structure identifier; Cost-Func is the per-atom error in
    normalised units (times E_scaling).
    """
    counts_header = " ".join(f"{'#' + s:>4}" for s in species)  # one token per column
    lines = [f"#  Ref(eV)        ANN(eV)      #atoms  Ref(eV/atom)   ANN(eV/atom) Ref-ANN(eV/atom)"
             f"    Cost-Func {counts_header}    Path-of-input-file"]
    for identifier, symbols, reference, predicted in rows:
        n = len(symbols)
        error = (reference - predicted) / n
        counts = " ".join(f"{symbols.count(s):4d}" for s in species)
        lines.append(f"{reference:14.6E} {predicted:14.6E} {n:5d} {reference / n:14.6E} {predicted / n:14.6E} "
                     f"{error:14.6E} {error * E_scaling:14.6E} {counts}    {identifier}")
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n")


def write_forces(path, rows) -> None:
    """Predicted forces next to the reference ones, one block per structure.

    ``rows``: (identifier, species list, positions, reference forces or None, predicted forces).
    Each block starts with ``# <identifier>  <n atoms>``, then one line per atom:
    symbol, x y z (Å), reference Fx Fy Fz and predicted Fx Fy Fz (eV/Å; reference NaN when unknown).
    """
    lines = ["# symbol  x y z (Å)  reference Fx Fy Fz  predicted Fx Fy Fz (eV/Å)"]
    for identifier, symbols, positions, reference, predicted in rows:
        lines.append(f"# {identifier}  {len(symbols)}")
        for k, symbol in enumerate(symbols):
            ref = reference[k] if reference is not None else [float("nan")] * 3
            values = list(positions[k]) + list(ref) + list(predicted[k])
            lines.append(f"{symbol:<3} " + " ".join(f"{v:16.8E}" for v in values))
    with atomic_write(path) as handle:
        handle.write("\n".join(lines) + "\n")
