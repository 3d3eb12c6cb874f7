// An aenet potential as the pair style evaluates it: the shared Chebyshev descriptor, and per
// environment species a network, its feature normalisation and its energy terms.
#ifndef AENET_CORE_MODEL_H
#define AENET_CORE_MODEL_H

#include "aenet_file.h"

#include <functional>
#include <string>
#include <vector>

namespace AenetCore {

struct Descriptor {
  std::vector<std::string> species;    // environment species; their order sets the typespins
  double rc_min = 0.0, rc_rad = 0.0, rc_ang = 0.0;
  int rad_order = 0, ang_order = 0;

  bool multi() const { return species.size() > 1; }
  int n_features() const { return (rad_order + ang_order + 2) * (multi() ? 2 : 1); }
  double rc_max() const { return rc_rad > rc_ang ? rc_rad : rc_ang; }
  std::vector<double> typespins() const;
  int index_of(const std::string &element) const;    // -1 if not an environment species
  bool operator==(const Descriptor &other) const;
  std::string summary() const;
};

// A feed-forward network: layers of weights (column-major, bias column last) and activation codes.
class Network {
 public:
  explicit Network(const SpeciesFile &file);
  int n_inputs() const { return nodes.front(); }
  size_t work_size() const;    // doubles of scratch that evaluate needs
  // The output for inputs x; dx receives d output / d x.
  double evaluate(const double *x, double *dx, double *work) const;

 private:
  std::vector<int> nodes, activations;
  std::vector<double> weights;
  std::vector<size_t> offsets;    // where each transition's weights start
  int widest = 0;
};

// One potential: the per-species networks of one set of files.
struct Model {
  std::string first_path;    // the file the descriptor was taken from, for messages
  Descriptor descriptor;
  std::vector<Network> networks;                  // per environment species
  std::vector<std::vector<double>> mean, inv_std; // per environment species: G_hat = (G - mean) inv_std
  double inv_scale = 1.0, shift = 0.0;
  std::vector<double> atomic_energy;              // per environment species

  // E_i = net(G_hat) / scale + shift + E_atom of the centre's species s; dE_dG receives dE_i / dG.
  double energy(int s, const double *G, double *G_hat, double *dE_dG, double *work) const;
};

// Gives the bytes of a file (read_file, or e.g. read on one MPI rank and broadcast).
using FileReader = std::function<std::string(const std::string &path)>;

// The model of a file-name template: "{element}" replaced by each environment species gives its
// files; the environment species come from the file of `element`, which must be one of them.
Model load_model(const std::string &name_template, const std::string &element, const FileReader &read = read_file);

}    // namespace AenetCore

#endif
