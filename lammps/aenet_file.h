// One species file of an aenet potential (.nn.ascii text or gfortran-unformatted binary .nn):
// the network, the Chebyshev descriptor set-up and the training-set info (spec section 9.1).
#ifndef AENET_CORE_FILE_H
#define AENET_CORE_FILE_H

#include <stdexcept>
#include <string>
#include <vector>

namespace AenetCore {

// A missing, malformed or inconsistent file; the message names the file and where in it.
class FileError : public std::runtime_error {
 public:
  explicit FileError(const std::string &message) : std::runtime_error(message) {}
};

struct SpeciesFile {
  std::string path;
  // network
  std::vector<int> nnodes;         // nodes per layer, input (nsf) to output
  std::vector<int> activations;    // codes of layers 2..nlayers
  std::vector<double> weights;     // per transition (n_out x (n_in + 1)) column-major, bias column last
  // set-up
  std::string species;
  std::vector<std::string> env_species;    // typespin order of the descriptor
  double rc_min = 0.0, rc_max = 0.0;
  int nsf = 0;
  std::vector<double> sfparam;    // nsf x 4, row j = basis function j; only row 0 is used
  std::vector<double> sf_avg, sf_cov;    // cov is E[G^2]
  // training-set info
  double scale = 1.0, shift = 0.0;
  std::vector<std::string> trainset_species;
  std::vector<double> atomic_energies;    // in trainset_species order
};

// The bytes of a file; FileError if it cannot be read.
std::string read_file(const std::string &path);

// Parses the content of the file at path: text when the name ends in ".ascii" or the content is not
// Fortran records.
SpeciesFile parse_species_file(const std::string &path, const std::string &bytes);

}    // namespace AenetCore

#endif
