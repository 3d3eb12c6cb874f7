"""Featurized structures and aenet-python's training-set HDF5 file (what ``aenet.trainset.TrnSet`` reads).

The file is written with h5py in the layout PyTables gives it in aenet-python:

* ``/metadata``: a one-row table (name, normalized, scale, shift, atom_types, atomic_energy,
  num_atoms_tot, num_structures, E_min, E_max, E_av; E_* of the per-atom cohesive energies);
* ``/structures/info``: one row per structure (path, first_atom, num_atoms, energy = total
  energy minus the atomic reference energies);
* ``/structures/atoms``: one row per atom (structure, type, coords, forces);
* ``/structures/features``: one variable-length float64 row per atom;
* optional ``/structures/cells/structure_NNNNNN/{lattice_vectors, pbc}`` and
  ``/structures/neighbor_info/structure_NNNNNN/{neighbor_counts, neighbor_lists, neighbor_vectors}``
  (vectors r_j - r_i, flattened per atom).

Booleans are 8-bit bitfields, PyTables' bool type, so PyTables reads them back as bool.
"""
import json
import warnings

import h5py
import numpy as np

from aenet_core.descriptor import typespins
from aenet_core.files import atomic_path
from aenet_core.structure import Structure

TITLE = "Aenet reference data"
INFO_DTYPE = np.dtype([("energy", "<f8"), ("first_atom", "<u8"), ("num_atoms", "<u4"), ("path", "S1024")])
STRUCTURE_FIELDS = ("path", "energy", "atom_types", "atoms", "neighbor_info", "cell", "pbc")
ATOM_DTYPE = np.dtype([("coords", "<f8", (3,)), ("forces", "<f8", (3,)), ("structure", "<u8"), ("type", "S64")])
B8 = h5py.h5t.STD_B8LE  # PyTables' bool


def metadata_dtype(n_types: int) -> np.dtype:
    return np.dtype([("E_av", "<f8"), ("E_max", "<f8"), ("E_min", "<f8"), ("atom_types", "S64", (n_types,)),
                     ("atomic_energy", "<f8", (n_types,)), ("name", "S1024"), ("normalized", "u1"),
                     ("num_atoms_tot", "<u8"), ("num_structures", "<u8"), ("scale", "<f8"), ("shift", "<f8")])


class FeaturizedAtomicStructure:
    """One featurized structure, as aenet-python's ``aenet.trainset.FeaturizedAtomicStructure`` holds it.

    ``atoms`` is a list of dicts {'type', 'fingerprint', 'coords', 'forces'}; ``neighbor_info``
    (optional) a dict {'neighbor_counts', 'neighbor_lists', 'neighbor_vectors'}; ``cell`` the
    lattice vectors as rows (None when isolated); ``pbc`` True when periodic in 3D.
    """

    def __init__(self, path, energy, atom_types, atoms, neighbor_info=None, cell=None, pbc=None):
        self.path = path
        self.energy = energy
        self.atom_types = atom_types
        self.atoms = atoms
        self.neighbor_info = neighbor_info
        self.cell = cell
        self.pbc = bool(pbc) if pbc is not None else False

    def __repr__(self) -> str:
        return (f"FeaturizedAtomicStructure(path={self.path!r}, num_atoms={self.num_atoms}, "
                f"energy={self.energy}, periodic={self.is_periodic})")

    @property
    def avec(self):
        """The lattice vectors (rows), or None (we do not reread the structure file)."""
        return self.cell

    @property
    def types(self) -> list:
        return [atom["type"] for atom in self.atoms]

    @property
    def coords(self) -> np.ndarray:
        return np.array([atom["coords"] for atom in self.atoms])

    @property
    def forces(self) -> np.ndarray:
        return np.array([atom["forces"] for atom in self.atoms])

    @property
    def structure(self) -> Structure:
        """The atomic structure (aenet_core's ``Structure``)."""
        pbc = None if self.cell is None else [self.pbc] * 3
        return Structure(self.coords, self.types, energy=self.energy, forces=self.forces, cell=self.cell, pbc=pbc,
                         name=self.path)

    @property
    def has_neighbor_info(self) -> bool:
        return self.neighbor_info is not None

    @property
    def has_cell(self) -> bool:
        return self.cell is not None

    @property
    def is_periodic(self) -> bool:
        return self.pbc and self.cell is not None

    @property
    def num_atoms(self) -> int:
        return len(self.atoms)

    @property
    def max_descriptor_length(self) -> int:
        return max((len(atom["fingerprint"]) for atom in self.atoms), default=0)

    @property
    def composition(self) -> dict:
        types = self.types
        return {t: types.count(t) for t in self.atom_types if t in types}

    @property
    def atom_features(self) -> np.ndarray:
        return np.array([atom["fingerprint"] for atom in self.atoms])

    def atom_features_for_type(self, atom_type: str) -> np.ndarray:
        return self.atom_features[np.array(self.types) == atom_type]

    @property
    def atom_weights(self) -> dict:
        """{type: Fortran aenet's typespin}, in ``atom_types`` order: ``global_moment_fingerprint``'s weights."""
        return dict(zip(self.atom_types, typespins(len(self.atom_types))))

    def global_moment_fingerprint(self, outer_moment=1, inner_moment=1, weighted=False, weights=None,
                                  append_weighted=False, stack_type_features=False, exclude_zero_atoms=False,
                                  atom_types=None) -> np.ndarray:
        """One vector for the structure.  Per type (``atom_types``, default all): the mean and central moments
        2..``inner_moment`` of its atoms' features (zeros when it has no atoms, unless ``exclude_zero_atoms``
        skips it), times the type's weight when ``weighted`` (``weights``, default ``atom_weights``;
        ``append_weighted`` keeps the unweighted part first).  The types' vectors are then concatenated
        (``stack_type_features``) or reduced to their mean and central moments 2..``outer_moment``."""
        for name, value in (("outer_moment", outer_moment), ("inner_moment", inner_moment)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"global_moment_fingerprint: {name} must be a positive integer (1: mean, "
                                 f"2: mean and variance, ...); got {value!r}")
        if weighted:
            weights = self.atom_weights if weights is None else weights
            if sorted(weights) != sorted(self.atom_types):
                raise ValueError(f"global_moment_fingerprint: weights must have exactly the structure's atom types "
                                 f"{self.atom_types} as keys; got {list(weights)}")
            if stack_type_features:
                warnings.warn("global_moment_fingerprint: weighting types is usually not useful when their "
                              "features are stacked", stacklevel=2)
        per_type = []
        for atom_type in self.atom_types if atom_types is None else atom_types:
            features = self.atom_features_for_type(atom_type)
            if len(features) == 0 and exclude_zero_atoms:
                continue
            vector = (_moments(features, inner_moment) if len(features)
                      else np.zeros(inner_moment * self.max_descriptor_length))
            if weighted:
                weighted_vector = weights[atom_type] * vector
                vector = np.concatenate([vector, weighted_vector]) if append_weighted else weighted_vector
            per_type.append(vector)
        if not per_type:
            raise ValueError(f"global_moment_fingerprint: structure {self.path} has no atoms of the types "
                             f"{atom_types or self.atom_types}")
        return np.concatenate(per_type) if stack_type_features else _moments(np.array(per_type), outer_moment)

    def to_JSON(self, indent=None) -> str:
        """The structure as JSON (arrays as lists); ``from_JSON`` reads it back."""
        return json.dumps({key: getattr(self, key) for key in STRUCTURE_FIELDS}, default=_as_list, sort_keys=True,
                          indent=indent)

    @classmethod
    def from_JSON(cls, json_string) -> "FeaturizedAtomicStructure":
        data = json.loads(json_string)
        missing = [key for key in STRUCTURE_FIELDS[:4] if key not in data]
        if missing:
            raise ValueError(f"FeaturizedAtomicStructure.from_JSON: the JSON lacks {missing}")
        atoms = [{key: value if key == "type" else np.asarray(value, dtype=np.float64) for key, value in atom.items()}
                 for atom in data["atoms"]]
        neighbors = data.get("neighbor_info")
        if neighbors is not None:
            neighbors = dict(neighbors, neighbor_counts=np.asarray(neighbors["neighbor_counts"]),
                             neighbor_lists=[np.asarray(n, dtype=np.int64) for n in neighbors["neighbor_lists"]],
                             neighbor_vectors=[np.asarray(v, dtype=np.float64).reshape(-1, 3)
                                               for v in neighbors["neighbor_vectors"]])
        cell = data.get("cell")
        return cls(data["path"], data["energy"], data["atom_types"], atoms, neighbor_info=neighbors,
                   cell=None if cell is None else np.asarray(cell, dtype=np.float64), pbc=data.get("pbc"))


def _moments(rows: np.ndarray, order: int) -> np.ndarray:
    """Mean over the rows, then their central moments 2..order, concatenated."""
    mean = rows.mean(axis=0)
    return np.concatenate([mean] + [((rows - mean) ** k).mean(axis=0) for k in range(2, order + 1)])


def _as_list(value):
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"FeaturizedAtomicStructure.to_JSON: cannot write a {type(value).__name__}")


def write_features_to_hdf5(featurized_structures, filename, typenames, atomic_energies, neighbor_info=None,
                           cell_info=None, name="Training set", normalized=False, scale=1.0, shift=0.0, complevel=1):
    """Write featurized structures (FeaturizedAtomicStructure objects or dicts with 'path', 'energy',
    'atoms') to an aenet-python training-set HDF5 file.

    ``neighbor_info``/``cell_info``: one dict or None per structure (see the module docstring);
    ``atomic_energies``: {type: reference energy}, 0 for types it lacks; ``complevel``: zlib level
    (0: uncompressed).  The file replaces ``filename`` only once it is complete.
    """
    records = [_record(s, i, typenames) for i, s in enumerate(featurized_structures)]
    if not records:
        raise ValueError(f"write_features_to_hdf5: no structures to write to {filename}")
    for what, per_structure in (("neighbor_info", neighbor_info), ("cell_info", cell_info)):
        if per_structure is not None and len(per_structure) != len(records):
            raise ValueError(f"write_features_to_hdf5: {what} has {len(per_structure)} entries for "
                             f"{len(records)} structures")
    references = {t: float((atomic_energies or {}).get(t, 0.0)) for t in typenames}
    cohesive = [r["energy"] - sum(references[a["type"]] for a in r["atoms"]) for r in records]
    per_atom = [e / len(r["atoms"]) for e, r in zip(cohesive, records)]
    metadata = np.zeros(1, metadata_dtype(len(typenames)))
    metadata[0] = (np.mean(per_atom), max(per_atom), min(per_atom), [t.encode() for t in typenames],
                   [references[t] for t in typenames], name.encode(), bool(normalized),
                   sum(len(r["atoms"]) for r in records), len(records), scale, shift)
    with atomic_path(filename) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["TITLE"] = np.bytes_(TITLE)
        _table(h5, "metadata", metadata, complevel=0, booleans=("normalized",))
        group = h5.create_group("structures")
        _write_structures(group, records, cohesive, complevel)
        if cell_info is not None:
            _write_cells(group.create_group("cells"), cell_info)
        if neighbor_info is not None:
            _write_neighbors(group.create_group("neighbor_info"), records, neighbor_info, complevel)


def _record(structure, index, typenames) -> dict:
    """{'path', 'energy', 'atoms'} of a FeaturizedAtomicStructure or such a dict, checked."""
    record = structure if isinstance(structure, dict) else vars(structure)
    missing = [key for key in ("path", "energy", "atoms") if key not in record]
    if missing:
        raise ValueError(f"write_features_to_hdf5: structure {index} lacks {missing}")
    if not record["atoms"]:
        raise ValueError(f"write_features_to_hdf5: structure {index} ({record['path']}) has no atoms")
    if len(str(record["path"]).encode()) > 1024:
        raise ValueError(f"write_features_to_hdf5: structure {index} has a path longer than the file's 1024 bytes: "
                         f"{record['path']}")
    for atom in record["atoms"]:
        if atom["type"] not in typenames:
            raise ValueError(f"write_features_to_hdf5: structure {index} ({record['path']}) has atom type "
                             f"{atom['type']!r}, not in typenames {list(typenames)}")
    return {"path": str(record["path"]), "energy": float(record["energy"]), "atoms": record["atoms"]}


def _write_structures(group, records, cohesive, complevel):
    info = np.zeros(len(records), INFO_DTYPE)
    atoms = np.zeros(sum(len(r["atoms"]) for r in records), ATOM_DTYPE)
    features, first = [], 0
    for i, (record, energy) in enumerate(zip(records, cohesive)):
        info[i] = (energy, first, len(record["atoms"]), record["path"].encode())
        for k, atom in enumerate(record["atoms"], start=first):
            forces = np.zeros(3) if atom.get("forces") is None else atom["forces"]
            atoms[k] = (atom["coords"], forces, i, atom["type"].encode())
            features.append(np.asarray(atom["fingerprint"], dtype=np.float64).ravel())
        first += len(record["atoms"])
    _table(group, "info", info, complevel)
    _table(group, "atoms", atoms, complevel)
    _rows(group, "features", features, np.float64, complevel)


def _write_cells(group, cell_info):
    for index, cell in enumerate(cell_info):
        if cell is None:
            continue
        entry = group.create_group(f"structure_{index:06d}")
        entry.create_dataset("lattice_vectors", data=np.asarray(cell["cell"], dtype=np.float64).reshape(3, 3))
        _bool_scalar(entry, "pbc", bool(np.all(cell["pbc"])))


def _write_neighbors(group, records, neighbor_info, complevel):
    for index, (record, info) in enumerate(zip(records, neighbor_info)):
        if info is None:
            continue
        n_atoms = len(record["atoms"])
        if len(info["neighbor_counts"]) != n_atoms:
            raise ValueError(f"write_features_to_hdf5: neighbor_info of structure {index} has "
                             f"{len(info['neighbor_counts'])} neighbour counts for {n_atoms} atoms")
        entry = group.create_group(f"structure_{index:06d}")
        entry.create_dataset("neighbor_counts", data=np.asarray(info["neighbor_counts"], dtype=np.uint32))
        _rows(entry, "neighbor_lists", info["neighbor_lists"], np.int32, complevel)
        _rows(entry, "neighbor_vectors", [np.asarray(v).ravel() for v in info["neighbor_vectors"]], np.float64,
              complevel)


def _filters(complevel) -> dict:
    return {"chunks": True, "maxshape": (None,),
            **({"compression": "gzip", "compression_opts": int(complevel)} if complevel else {})}


def _table(group, name, rows, complevel, booleans=()):
    """A PyTables-style table: a chunked, extensible 1-D compound dataset; ``booleans`` (uint8 fields)
    are stored as bitfields."""
    compound = h5py.h5t.create(h5py.h5t.COMPOUND, rows.dtype.itemsize)
    for field in rows.dtype.names:
        dtype, offset = rows.dtype.fields[field][:2]
        member = B8.copy() if field in booleans else h5py.h5t.py_create(dtype, logical=True)
        compound.insert(field.encode(), offset, member)
    dataset = group.create_dataset(name, shape=rows.shape, dtype=h5py.Datatype(compound), **_filters(complevel))
    dataset.id.write(h5py.h5s.ALL, h5py.h5s.ALL, rows, mtype=compound)


def _rows(group, name, rows, dtype, complevel):
    """A PyTables-style VLArray: one variable-length row of ``dtype`` per entry."""
    data = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):  # element-wise: rows of equal length would otherwise broadcast
        data[i] = np.asarray(row, dtype=dtype)
    group.create_dataset(name, data=data, dtype=h5py.vlen_dtype(dtype), **_filters(complevel))


def _bool_scalar(group, name, value: bool):
    dataset = h5py.h5d.create(group.id, name.encode(), B8, h5py.h5s.create(h5py.h5s.SCALAR))
    dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, np.array(value, dtype=np.uint8), mtype=B8)
