"""Files written after training: aenet ``energies.*`` tables and predicted forces."""
from aenet_core.io.common import atomic_write


def write_energies(path, rows, species, E_scaling: float) -> None:
    """An aenet ``energies.<split>.0`` table.

    ``rows``: (identifier, species list, reference total energy, predicted total energy) per structure.
    Columns: Ref(eV) ANN(eV) #atoms Ref(eV/atom) ANN(eV/atom) Ref-ANN(eV/atom) Cost-Func, the atom
    count of each species, then the structure identifier; Cost-Func is the per-atom error in
    normalised units (times E_scaling).
    """
    counts_header = " ".join(f"#{s:>3}" for s in species)
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
