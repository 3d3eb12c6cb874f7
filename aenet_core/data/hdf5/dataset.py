"""``HDF5StructureDataset``: labelled structures in one HDF5 file with persisted features and derivatives.

``HDF5StructureDataset(descriptor, "db.h5", sources=[...], mode="build")`` and
``build_database(persist_features=True, persist_force_derivatives=True)``
stream the sources (files, Structures, ase.Atoms, or a source collection of
``aenet_core.torch_training.sources``) into one file (layout: ``aenet_core.data.hdf5.schema``);
the same object then serves training (``TorchANNPotential.train(dataset=db)``)
without featurizing again.  It implements ``StructureSource``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from aenet_core.data.cache import LRUCache
from aenet_core.data.hdf5.schema import (DEFAULT_STORAGE_DTYPE, ENTRY_ARRAYS, ENTRY_STRINGS, FORMAT,
                                         OPTIONAL_STRINGS, SCHEMA_3_ARRAYS, SCHEMA_3_STRINGS, DatabaseError,
                                         IncompatibleDescriptorError, check_compression, check_schema, compact_json,
                                         reading, sha256_text, stored_species)
from aenet_core.structure import Structure, hash_structure, loss_weights, referenced_energy_per_atom, structure_sha256

if TYPE_CHECKING:  # imported where used: reading entries needs no torch
    import torch


class HDF5StructureDataset:
    """Labelled structures in an HDF5 file, with optionally persisted features and derivatives.

    ``mode``: ``'auto'`` opens ``database_file`` when it exists (else call
    ``build_database``), ``'load'`` requires it, ``'build'`` (re)builds it with
    ``build_database``.  ``descriptor`` may be None when the file stores one, and for a
    database of structures only (built and opened without one; what featurizes then
    raises a RuntimeError).  A descriptor that differs from the stored one raises
    ``IncompatibleDescriptorError`` (a RuntimeError) naming the differing parameter.
    ``max_energy`` (referenced energy per atom, eV), ``max_forces`` (eV/Å) and
    ``atomic_energies`` filter at build time (``StructureFilter``, the same as
    in memory) and are recorded in the file; ``limits`` (``PlausibilityLimits``) refuse implausible
    structures then.  ``seed`` is accepted for API
    compatibility; the dataset draws no random numbers (splits use
    ``split_seed``).  ``in_memory_cache_size`` bounds the structures kept after
    ``get_structure``; ``payload_cache_mb`` bounds the persisted features and
    derivatives kept in memory once read (least recently used go first), so that
    epochs after the first read nothing; a file larger than it is read batch by
    batch, the next batches by a background thread (``BatchLoader``).  ``compression`` is ``'zlib'`` (the
    default; ``'gzip'`` is the same HDF5 filter) with ``compression_level`` 0-9, ``'lzf'`` (no level) or None
    (none; reads fastest).

    Opening a file and reading its entries needs no torch: the stored descriptor is built, and the
    persisted payloads read, when first asked for.
    """

    def __init__(self, descriptor, database_file, sources=None, mode="auto", *, max_energy=None,
                 atomic_energies=None, seed=None, in_memory_cache_size=2048, compression="zlib", compression_level=5,
                 max_forces=None, payload_cache_mb=1024, limits=None):
        if mode not in ("auto", "build", "load"):
            raise ValueError(f"Invalid mode {mode!r} (must be 'auto'|'build'|'load')")
        check_compression(compression, compression_level)
        if payload_cache_mb is None or payload_cache_mb < 0:
            raise ValueError(f"payload_cache_mb must be >= 0; got {payload_cache_mb!r}")
        if in_memory_cache_size is None or in_memory_cache_size < 0:
            raise ValueError(f"in_memory_cache_size must be >= 0; got {in_memory_cache_size!r}")
        self.database_file = Path(database_file).resolve()  # stays valid if the working directory changes
        self._descriptor, self._stored_descriptor, self._descriptor_attrs = descriptor, None, None
        self.sources, self.mode, self.seed = sources, mode, seed
        self.max_energy, self.max_forces, self.limits = max_energy, max_forces, limits
        self.atomic_energies = dict(atomic_energies or {})
        self.compression, self.compression_level = compression, compression_level
        self._handle, self._handle_pid = None, None
        self._structures = LRUCache(in_memory_cache_size)
        self._payload_cache_mb = payload_cache_mb
        self._loaded = False
        if mode == "load" and not self.database_file.exists():
            raise FileNotFoundError(f"{self.database_file}: no such database; build it with mode='build' "
                                    f"and build_database()")
        if mode != "build" and self.database_file.exists():
            self._load_metadata()

    # -- building ------------------------------------------------------------------------

    def build_database(self, show_progress=True, *, build_workers=0, persist_descriptor=False,
                       persist_features=False, persist_force_derivatives=False, storage_dtype=DEFAULT_STORAGE_DTYPE):
        """Read every source, filter, featurize and write the file (temp name, then rename).

        ``persist_force_derivatives`` stores features and the sparse derivatives of force-labelled
        structures; ``persist_features`` stores features of every structure; either implies
        ``persist_descriptor`` (and needs a descriptor; without one the file holds structures only).
        ``build_workers > 1`` featurizes in that many processes while this process writes (refused
        for a source collection whose capabilities do not support a parallel build).  ``storage_dtype``
        is 'float64' or 'float32'.  When no source gives a structure that passes (e.g. a shard of an
        active-learning round whose labelling all failed), the file has no entries and a warning says so.
        """
        from aenet_core.data.hdf5.build import write_database
        from aenet_core.data.sources import StructureFilter, as_input_list, input_stamps, iter_entries

        if self.mode == "load":
            raise ValueError(f"{self.database_file}: opened with mode='load'; use mode='build' to rebuild it")
        if storage_dtype not in ("float64", "float32"):
            raise ValueError(f"storage_dtype must be 'float64' or 'float32'; got {storage_dtype!r}")
        if self.sources is None:
            raise ValueError("sources must be provided to build_database() (structure files, Structures, ase.Atoms "
                             "or a source collection)")
        self.sources = as_input_list(self.sources)
        build_workers = _build_workers(build_workers, self.sources)
        persist = persist_features or persist_force_derivatives
        if (persist or persist_descriptor) and self.descriptor is None:
            raise RuntimeError("Persisting HDF5 cache payloads or a descriptor manifest requires a descriptor "
                               "instance: pass descriptor=..., or build a structures-only database without "
                               "persist_descriptor/persist_features/persist_force_derivatives")
        species = None if self.descriptor is None else self.descriptor.species
        structure_filter = StructureFilter(species, self.atomic_energies, self.max_energy, self.max_forces,
                                           self.limits)
        recipe = {"sources": input_stamps(self.sources), "filter": structure_filter.settings(),
                  "atomic_energies": self.atomic_energies,
                  "descriptor": self.descriptor.identity() if persist or persist_descriptor else None,
                  "features": persist_features, "derivatives": persist_force_derivatives,
                  "storage_dtype": storage_dtype}
        if self.mode == "auto" and self._loaded:
            if self._attrs["recipe_sha256"] == sha256_text(compact_json(recipe)):
                return
            raise DatabaseError(f"{self.database_file} exists but was built from other sources or settings; "
                                f"use mode='build' to rebuild it, or delete it")
        self._close()
        entries = iter_entries(self.sources, "sources", source_errors=True)
        write_database(self.database_file, self.descriptor, entries, structure_filter, features=persist,
                       derivatives=persist_force_derivatives, storage_dtype=storage_dtype,
                       compression=self.compression, compression_level=self.compression_level,
                       workers=build_workers, show_progress=show_progress, recipe=recipe)
        self._load_metadata()

    # -- opening ------------------------------------------------------------------------

    def _load_metadata(self):
        """Validate the file and read the per-entry arrays (everything but per-atom payloads)."""
        path = self.database_file
        try:
            with h5py.File(path, "r") as f:
                check_schema(path, f)
                self._attrs = dict(f.attrs)

                def read(name, strings=False):
                    with reading(path, name):
                        return f[name].asstr()[:].tolist() if strings else f[name][:]

                entries = {name: read("entries/" + name) for name in ENTRY_ARRAYS}
                entries.update({name: read("entries/" + name, strings=True) for name in ENTRY_STRINGS})
                n = len(entries["energy"])
                entries.update({name: read("entries/" + name, strings=True) if "entries/" + name in f else [""] * n
                                for name in OPTIONAL_STRINGS})
                if "entries/stress" in f:
                    entries.update({name: read("entries/" + name) for name in SCHEMA_3_ARRAYS})
                    entries.update({name: read("entries/" + name, strings=True) for name in SCHEMA_3_STRINGS})
                else:  # schema 2: no stress labels, weights or config types
                    entries.update(has_stress=np.zeros(n, bool), stress=np.zeros((n, 3, 3)), weight=np.ones(n),
                                   config_type=[""] * n)
                labels, codes = stored_species(f, read)
                self._forces = read("atoms/forces")  # 24 bytes per atom: labels stay in memory
                positions = read("atoms/positions")
                self._descriptor_attrs = {k: str(v) for k, v in f["descriptor"].attrs.items()} \
                    if "descriptor" in f else None
                self._has_features = "features/values" in f
                self._storage_dtype = str(f["features"].attrs["storage_dtype"]) if self._has_features else None
                self._has_derivatives = "derivatives/edge_offset" in f
                self._derivative_orders = tuple(int(f["derivatives"].attrs[k]) for k in ("n_radial", "n_angular")) \
                    if self._has_derivatives else None
                offsets = {kind: read(f"derivatives/{kind}_offset") for kind in ("edge", "triplet")
                           if self._has_derivatives}
        except OSError as err:
            raise DatabaseError(f"{path}: not a readable HDF5 file ({err})") from None
        except KeyError as err:
            raise DatabaseError(f"{path}: incomplete aenet_core database, missing {err.args[0]}; rebuild it") from None
        self._entries = entries
        self._labels, self._codes = np.array(labels, object), codes
        self._check_content(positions)
        self._use_descriptor()
        self._species_idx = self._species_indices() if self._species() is not None else None
        self._restore_filter()
        self._derivative_offsets, self._payloads = (offsets.get("edge"), offsets.get("triplet")), None
        self._loaded = True

    def _check_content(self, positions):
        """Refuse a file whose structures or labels no longer hash to the content_sha256 written with them;
        the entries' geometry hashes come with it."""
        e, hasher, self._geometry_sha256s = self._entries, hashlib.sha256(), []
        symbols = self._labels[self._codes].tolist()
        for index, (lo, hi) in enumerate(zip(e["atom_offset"][:-1], e["atom_offset"][1:])):
            structure = self._entry_structure(index, positions[lo:hi], symbols[lo:hi])
            hash_structure(hasher, structure)
            self._geometry_sha256s.append(structure_sha256(structure, labels=False))
        if hasher.hexdigest() != self._attrs["content_sha256"]:
            raise DatabaseError(f"{self.database_file}: its structures or labels (entries/, atoms/) do not match "
                                f"the content_sha256 written with them: the file is damaged; rebuild it")

    def _use_descriptor(self):
        """Take the stored descriptor when none is given; refuse a given one that differs from it."""
        if self._descriptor_attrs is None:
            return  # structures only, or features computed with the descriptor given
        stored = json.loads(self._descriptor_attrs["config_json"])
        if self._descriptor is None:
            self._stored_descriptor = stored
            return
        for key, value in self._descriptor.identity().items():
            if value != stored[key]:
                raise IncompatibleDescriptorError(
                    f"{self.database_file}: Persisted descriptor manifest is incompatible with the explicit "
                    f"descriptor configuration: built with descriptor {key}={stored[key]!r}, but the descriptor "
                    f"given has {key}={value!r}; rebuild the database with mode='build' (or pass descriptor=None "
                    f"to use the stored one)")

    @property
    def descriptor(self):
        """The descriptor given, else the file's, built when first asked for (it needs torch)."""
        if self._descriptor is None and self._stored_descriptor is not None:
            from aenet_core.descriptor import ChebyshevDescriptor

            self._descriptor = ChebyshevDescriptor.from_config(self._stored_descriptor, device="cpu")
        return self._descriptor

    @property
    def descriptor_config(self) -> dict | None:
        """``descriptor.get_config()``, read from the file while its descriptor is not built."""
        if self._descriptor is None:
            return self._stored_descriptor
        return self._descriptor.get_config()

    def _species(self) -> list | None:
        """The descriptor's species, in its order (read from the file while its descriptor is not built); None
        without a descriptor."""
        if self._descriptor is not None:
            return self._descriptor.species
        return None if self._stored_descriptor is None else list(self._stored_descriptor["species"])

    def _atom_species(self, lo, hi) -> list:
        """The species of the file's atoms ``lo:hi``."""
        return self._labels[self._codes[lo:hi]].tolist()

    def _require_descriptor(self, action: str):
        if self._species_idx is None:
            raise RuntimeError(f"{self.database_file}: {action} requires a descriptor; this database stores none. "
                               f"Provide descriptor=... or persist a descriptor manifest with "
                               f"build_database(persist_descriptor=True)")

    def _species_indices(self):
        """Each atom's index in the descriptor's species."""
        lookup = {s: i for i, s in enumerate(self._species())}
        unknown = sorted(set(self._labels[np.unique(self._codes)].tolist()) - set(lookup))
        if unknown:
            raise DatabaseError(f"{self.database_file}: holds species {unknown} that the descriptor "
                                f"{self._species()} does not know")
        return np.array([lookup.get(label, -1) for label in self._labels], np.int64)[self._codes]

    def _restore_filter(self):
        stored = json.loads(self._attrs["filter_json"])
        stored["atomic_energies"] = json.loads(self._attrs["atomic_energies_json"])
        given = {"max_energy": self.max_energy, "max_forces": self.max_forces, "atomic_energies": self.atomic_energies}
        for name, value in given.items():
            if value and value != stored[name] and self.mode != "build":
                raise DatabaseError(f"{self.database_file}: was built with {name}={stored[name]!r}, not {value!r}; "
                                    f"filters apply at build time (rebuild with mode='build')")
        self.max_energy, self.max_forces = stored["max_energy"], stored["max_forces"]
        self.atomic_energies = stored["atomic_energies"]

    def _file(self):
        """The read-only handle of this process (DataLoader workers each open their own)."""
        if self._handle is None or self._handle_pid != os.getpid():
            # A chunk cache of 1 MiB per open dataset: every chunk the build writes fits (payloads read at random
            # gain nothing from more), and the payload arrays stay open, each with its own.
            self._handle = h5py.File(self.database_file, "r", rdcc_nbytes=1 << 20)
            self._handle_pid = os.getpid()
        return self._handle

    def _require_loaded(self):
        if not self._loaded:
            raise RuntimeError(f"{self.database_file}: the database is not built yet; call build_database()")

    def close(self):
        self._close()
        self._structures.clear()
        if self._loaded and self._payloads is not None:
            self._payloads.cache.clear()

    def _close(self):
        if self._handle is not None and self._handle_pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"], state["_handle_pid"] = None, None
        return state

    # -- entries ------------------------------------------------------------------------

    @property
    def content_sha256(self) -> str:
        """Hash of every stored structure and label, in entry order (splits refer to it)."""
        self._require_loaded()
        return str(self._attrs["content_sha256"])

    @property
    def geometry_sha256s(self) -> list:
        self._require_loaded()
        return self._geometry_sha256s

    @property
    def recipe_sha256(self) -> str:
        """Hash of how the file was built (sources, filter, descriptor, what was persisted, storage)."""
        self._require_loaded()
        return str(self._attrs["recipe_sha256"])

    def __len__(self) -> int:
        self._require_loaded()
        return len(self._entries["energy"])

    def _index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.database_file}: entry {index} is out of range ({len(self)} entries)")
        return index % len(self)

    def atom_counts(self, indices) -> list:
        offsets = self._entries["atom_offset"]
        return [int(offsets[i + 1] - offsets[i]) for i in indices]

    def energies(self, indices) -> list:
        return self._entries["energy"][list(indices)].tolist()

    def has_forces(self, index: int) -> bool:
        return bool(self._entries["has_forces"][index])

    def species_of(self, indices) -> torch.Tensor:
        import torch

        self._require_descriptor("featurizing")
        offsets = self._entries["atom_offset"]
        return torch.cat([torch.from_numpy(self._species_idx[offsets[i]: offsets[i + 1]]) for i in indices])

    def stress_labels(self, indices) -> tuple:
        e, indices = self._entries, list(indices)
        periodic = e["has_cell"][indices] & e["pbc"][indices].all(1)
        volumes = np.where(periodic, np.abs(np.linalg.det(e["cell"][indices])), np.nan)
        return e["stress"][indices], e["has_stress"][indices].astype(bool), volumes

    def loss_weights(self, indices, config_type_weights=None) -> np.ndarray:
        e, indices = self._entries, list(indices)
        return loss_weights(e["weight"][indices], [e["config_type"][i] or None for i in indices], config_type_weights)

    def forces_of(self, indices):
        if not all(self.has_forces(i) for i in indices):
            return None
        offsets = self._entries["atom_offset"]
        return np.concatenate([self._forces[offsets[i]: offsets[i + 1]] for i in indices])

    def referenced_energy_per_atom(self, index: int) -> float:
        offsets = self._entries["atom_offset"]
        species = self._atom_species(offsets[index], offsets[index + 1])
        return float(referenced_energy_per_atom(self._entries["energy"][index], species, self.atomic_energies))

    def get_structure(self, idx: int) -> Structure:
        index = self._index(idx)
        cached = self._structures.get(index)
        if cached is not None:
            return cached
        lo, hi = self._entries["atom_offset"][index], self._entries["atom_offset"][index + 1]
        structure = self._entry_structure(index, self._file()["atoms/positions"][lo:hi], self._atom_species(lo, hi))
        self._structures.put(index, structure)
        return structure

    def _entry_structure(self, index, positions, species) -> Structure:
        """Entry ``index`` as a Structure, from its ``positions`` and ``species`` and the per-entry arrays."""
        e = self._entries
        lo, hi = e["atom_offset"][index], e["atom_offset"][index + 1]
        has_cell = bool(e["has_cell"][index])
        return Structure(
            positions=positions, species=species, energy=float(e["energy"][index]),
            forces=self._forces[lo:hi] if e["has_forces"][index] else None,  # Structure copies its arrays
            cell=e["cell"][index] if has_cell else None, pbc=e["pbc"][index] if has_cell else None,
            name=e["name"][index] or None, stress=e["stress"][index] if e["has_stress"][index] else None,
            weight=float(e["weight"][index]), config_type=e["config_type"][index] or None)

    def get_structure_identifier(self, idx: int) -> str:
        """``path#frame=N`` for an entry read from a file or source record (its display name, else its id), else
        the structure's name or ``structure_NNNNNN``."""
        return self._entries["identifier"][self._index(idx)]

    def get_entry_metadata(self, idx: int) -> dict:
        """source_id, frame_idx, source_kind ("file", "structure" or the record's), display_name, name,
        has_forces, n_atoms, energy."""
        index = self._index(idx)
        e = self._entries
        return {"source_id": e["source_id"][index], "frame_idx": int(e["frame"][index]),
                "source_kind": e["source_kind"][index], "display_name": e["display_name"][index],
                "name": e["name"][index],
                "has_forces": bool(e["has_forces"][index]), "n_atoms": self.atom_counts([index])[0],
                "energy": float(e["energy"][index])}

    # -- persisted descriptor, features and derivatives (aenet-python's API; its dict keys) ------------

    def has_persisted_descriptor(self) -> bool:
        return self._loaded and self._descriptor_attrs is not None

    def get_descriptor_manifest(self) -> dict | None:
        """The stored descriptor: schema_version, manifest_format, descriptor_class, config_json,
        config_sha256 and config (a dict); None when the file stores none."""
        if not self.has_persisted_descriptor():
            return None
        attrs = self._descriptor_attrs
        return {"schema_version": int(self._attrs["schema_version"]), "manifest_format": f"{FORMAT}.descriptor",
                "descriptor_class": attrs["descriptor_class"], "config_json": attrs["config_json"],
                "config_sha256": sha256_text(attrs["config_json"]), "config": json.loads(attrs["config_json"])}

    def load_persisted_descriptor(self):
        """A new descriptor built from the stored one (RuntimeError when the file stores none)."""
        if not self.has_persisted_descriptor():
            raise RuntimeError(f"{self.database_file}: This HDF5 dataset does not contain a persisted descriptor "
                               f"manifest; build it with build_database(persist_descriptor=True)")
        from aenet_core.descriptor import ChebyshevDescriptor

        return ChebyshevDescriptor.from_config(json.loads(self._descriptor_attrs["config_json"]), device="cpu")

    def has_persisted_features(self) -> bool:
        return self._loaded and self._has_features

    def has_persisted_force_derivatives(self) -> bool:
        return self._loaded and self._has_derivatives

    def _cache_info(self) -> dict:
        attrs = self._descriptor_attrs
        return {"schema_version": int(self._attrs["schema_version"]), "cache_format": FORMAT,
                "descriptor_compat_json": attrs["identity_json"], "descriptor_compat_sha256": attrs["identity_sha256"],
                "storage_dtype": self._storage_dtype, "contains_features": self._has_features,
                "contains_force_derivatives": self._has_derivatives}

    def get_persisted_feature_cache_info(self) -> dict | None:
        """What the stored features are: schema_version, cache_format, descriptor_compat_json/_sha256 (the
        descriptor's identity), storage_dtype, contains_features, contains_force_derivatives; None without."""
        return self._cache_info() if self.has_persisted_features() else None

    def get_force_derivative_cache_info(self) -> dict | None:
        """``get_persisted_feature_cache_info()`` and payload_format, n_radial_features, n_angular_features, multi;
        None when no derivatives are stored."""
        if not self.has_persisted_force_derivatives():
            return None
        n_radial, n_angular = self._derivative_orders
        return {**self._cache_info(), "payload_format": f"{FORMAT}.local_derivatives",
                "n_radial_features": n_radial, "n_angular_features": n_angular, "multi": len(self._species()) > 1}

    def load_persisted_features(self, idx: int) -> torch.Tensor:
        """The stored raw features (N, F) of entry ``idx``, in the descriptor's dtype."""
        if not self.has_persisted_features():
            raise RuntimeError(f"{self.database_file}: This HDF5 dataset does not contain persisted features; build "
                               f"it with build_database(persist_features=True)")
        return self.stored_features([self._index(idx)]).to(self.descriptor.dtype)

    def load_persisted_force_derivatives(self, idx: int) -> dict | None:
        """The stored derivatives of entry ``idx`` as ``{"radial": {center_idx, neighbor_idx, dG_drij (E, R+1, 3),
        neighbor_typespin}, "angular": {center_idx, neighbor_j_idx, neighbor_k_idx, grads_i/j/k (T, A+1, 3),
        triplet_typespin}}`` (typespins None with one species); None for an entry without forces."""
        if not self.has_persisted_force_derivatives():
            raise RuntimeError(f"{self.database_file}: This HDF5 dataset does not contain a force-derivative cache; "
                               f"build it with build_database(persist_force_derivatives=True)")
        index = self._index(idx)
        if not self.has_forces(index):
            return None
        from aenet_core.data.samples import derivative_dict

        return derivative_dict(self.stored_derivatives([index])[1])

    def get_force_indices(self) -> list:
        """Entries with force labels."""
        self._require_loaded()
        return np.flatnonzero(self._entries["has_forces"]).tolist()

    # -- samples (aenet_core.data.samples) ------------------------------------------------

    def __getitem__(self, idx: int) -> dict:
        """Entry ``idx``'s sample dict, the force view where it has forces (derivatives from the file when it
        stores them)."""
        return self.materialize_sample(idx, use_forces=True, load_local_derivatives=True)

    def materialize_sample(self, idx: int, *, use_forces: bool, cache_state=None, cache_features: bool = False,
                           cache_neighbors: bool = False, cache_force_triplets: bool = False,
                           load_local_derivatives: bool = False) -> dict:
        """Entry ``idx``'s sample dict, the force view when ``use_forces`` and it has forces; features from the
        file when it stores them, derivatives too when ``load_local_derivatives``.  ``cache_neighbors`` and
        ``cache_force_triplets`` are accepted for aenet-python's signature (no neighbour graphs are kept)."""
        from aenet_core.data.samples import materialize_sample

        return materialize_sample(self, self._index(idx), use_forces=use_forces, cache_state=cache_state,
                                  cache_features=cache_features, load_local_derivatives=load_local_derivatives)

    # -- persisted payloads ---------------------------------------------------------------

    def _payload_reader(self):
        """The reader of the persisted features and derivatives, made when first needed (it needs torch)."""
        if self._payloads is None:
            from aenet_core.data.hdf5.payloads import PayloadReader

            self._payloads = PayloadReader(self._file, self.descriptor, self._entries["atom_offset"],
                                           *self._derivative_offsets, int(self._payload_cache_mb * 2**20))
        return self._payloads

    def stored_features(self, indices):
        """Raw features (sum N, F) of ``indices`` in order, or None when the file stores none."""
        return self._payload_reader().features(indices) if self._has_features else None

    def stored_derivatives(self, indices, dtype=None):
        """(features, LocalDerivatives) of force-labelled ``indices`` from the file, or None; the derivatives
        in ``dtype`` when given (the payload cache then holds them so: float32 halves it), else the
        descriptor's."""
        if not (self._has_derivatives and self._has_features):
            return None
        if not all(self.has_forces(i) for i in indices):
            raise ValueError(f"{self.database_file}: derivatives are stored for force-labelled entries only")
        return self._payload_reader().features_and_derivatives(list(indices), self.species_of(indices), dtype)


def _build_workers(build_workers, sources) -> int:
    """``build_workers`` as an int >= 0; more than 1 refused for a source collection that cannot build in
    parallel."""
    from aenet_core.data.records import SourceCollection

    workers = int(build_workers or 0)
    if workers < 0:
        raise ValueError(f"build_workers must be >= 0; got {build_workers!r}")
    serial = [type(item).__name__ for item in sources
              if isinstance(item, SourceCollection) and not item.capabilities.supports_parallel_build]
    if workers > 1 and serial:
        raise ValueError(f"The configured sources do not support build_workers > 1 ({serial[0]} declares "
                         f"supports_parallel_build=False); got build_workers={workers}")
    return workers
