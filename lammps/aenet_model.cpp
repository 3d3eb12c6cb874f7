#include "aenet_model.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace AenetCore {
namespace {

const double DEGENERATE_STD = 1e-10;    // a feature with this spread or less normalises to 0 (Fortran aenet)
const int MAX_ORDER = 100;
const char *PLACEHOLDER = "{element}";

std::string list(const std::vector<std::string> &names)
{
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? " " : "") + names[i];
  return out + "]";
}

std::string number(double value)
{
  std::ostringstream out;
  out.precision(15);
  out << value;
  return out.str();
}

std::string file_for(const std::string &name_template, const std::string &element)
{
  std::string path = name_template;
  const std::string placeholder = PLACEHOLDER;
  for (size_t at = path.find(placeholder); at != std::string::npos; at = path.find(placeholder, at + element.size()))
    path.replace(at, placeholder.size(), element);
  return path;
}

// y = f(z) in place, d = f'(z); codes as in .nn.ascii (aenet_core/model/network.py).
void activate(int code, double *z, double *d, int n)
{
  for (int i = 0; i < n; ++i) {
    if (code == 0) {
      d[i] = 1.0;
    } else if (code == 1) {
      z[i] = std::tanh(z[i]);
      d[i] = 1.0 - z[i] * z[i];
    } else if (code == 2) {
      z[i] = 1.0 / (1.0 + std::exp(-z[i]));
      d[i] = z[i] * (1.0 - z[i]);
    } else {    // 3 mtanh: 1.7159 tanh(2z/3); 4 twist: mtanh + 0.1 z
      double t = std::tanh(z[i] * (2.0 / 3.0)), slope = code == 4 ? 0.1 : 0.0;
      d[i] = 1.7159 * (2.0 / 3.0) * (1.0 - t * t) + slope;
      z[i] = 1.7159 * t + slope * z[i];
    }
  }
}

Descriptor descriptor_of(const SpeciesFile &f)
{
  auto fail = [&](const std::string &message) { return FileError(f.path + ": setup section, " + message); };
  Descriptor d;
  d.species = f.env_species;
  d.rc_min = f.rc_min;
  d.rc_rad = f.sfparam[0];
  d.rc_ang = f.sfparam[2];
  double rad_order = f.sfparam[1], ang_order = f.sfparam[3];
  if (rad_order != std::round(rad_order) || ang_order != std::round(ang_order) || rad_order < 0 ||
      ang_order < 0 || rad_order > MAX_ORDER || ang_order > MAX_ORDER)
    throw fail("sfparam: polynomial orders must be integers from 0 to 100; got " + number(rad_order) + ", " +
               number(ang_order));
  d.rad_order = (int) rad_order;
  d.ang_order = (int) ang_order;
  for (size_t i = 0; i < d.species.size(); ++i)
    if (std::count(d.species.begin(), d.species.end(), d.species[i]) > 1)
      throw fail("environment species must be distinct; got " + list(d.species));
  if (!(d.rc_rad > 0 && d.rc_ang > 0))
    throw fail("sfparam: cutoffs must be positive; got " + number(d.rc_rad) + ", " + number(d.rc_ang));
  if (!(d.rc_min >= 0 && d.rc_min < std::min(d.rc_rad, d.rc_ang)))
    throw fail("Rc_min must be >= 0 and below both cutoffs; got " + number(d.rc_min));
  if (std::fabs(f.rc_max - d.rc_max()) > 1e-12 * d.rc_max())
    throw fail("Rc_max " + number(f.rc_max) + " is not the larger Chebyshev cutoff " + number(d.rc_max()));
  if (d.n_features() != f.nsf)
    throw fail("nsf " + std::to_string(f.nsf) + " differs from the " + std::to_string(d.n_features()) +
               " features of the Chebyshev parameters");
  return d;
}

std::string parameters(const SpeciesFile &f)
{
  return "(" + number(f.sfparam[0]) + ", " + number(f.sfparam[1]) + ", " + number(f.sfparam[2]) + ", " +
      number(f.sfparam[3]) + ")";
}

// The fields that every species file of one potential shares (aenet_core/export/nn_ascii.py).
void check_same_potential(const SpeciesFile &f, const SpeciesFile &first)
{
  auto differs = [&](const std::string &field, const std::string &mine, const std::string &theirs) {
    return FileError(f.path + ": " + field + " " + mine + " differs from " + theirs + " in " + first.path);
  };
  if (f.env_species != first.env_species)
    throw differs("env_species", list(f.env_species), list(first.env_species));
  if (f.rc_min != first.rc_min) throw differs("Rc_min", number(f.rc_min), number(first.rc_min));
  if (f.rc_max != first.rc_max) throw differs("Rc_max", number(f.rc_max), number(first.rc_max));
  if (f.scale != first.scale) throw differs("scale", number(f.scale), number(first.scale));
  if (f.shift != first.shift) throw differs("shift", number(f.shift), number(first.shift));
  if (f.trainset_species != first.trainset_species || f.atomic_energies != first.atomic_energies)
    throw differs("training-set species and atomic energies", list(f.trainset_species),
                  list(first.trainset_species));
  if (!std::equal(f.sfparam.begin(), f.sfparam.begin() + 4, first.sfparam.begin()))
    throw differs("Chebyshev parameters (sfparam column 1)", parameters(f), parameters(first));
}

void check_network(const SpeciesFile &f)
{
  if (f.nnodes.size() < 3 || f.nnodes.back() != 1 || f.activations.back() != 0) {
    std::string nodes;
    for (int n : f.nnodes) nodes += " " + std::to_string(n);
    throw FileError(f.path + ": network section, expected hidden layers and one linear output node; got nnodes" +
                    nodes);
  }
}

}    // namespace

std::vector<double> Descriptor::typespins() const
{
  // Fortran aenet: start at trunc(-S/2), skip 0 when S is even.
  int n = (int) species.size(), s = -(n / 2);
  std::vector<double> spins;
  for (int i = 0; i < n; ++i, ++s) {
    if (s == 0 && n % 2 == 0) ++s;
    spins.push_back(s);
  }
  return spins;
}

int Descriptor::index_of(const std::string &element) const
{
  auto at = std::find(species.begin(), species.end(), element);
  return at == species.end() ? -1 : (int) (at - species.begin());
}

bool Descriptor::operator==(const Descriptor &o) const
{
  return species == o.species && rc_min == o.rc_min && rc_rad == o.rc_rad && rc_ang == o.rc_ang &&
      rad_order == o.rad_order && ang_order == o.ang_order;
}

std::string Descriptor::summary() const
{
  return "species " + list(species) + ", radial cutoff " + number(rc_rad) + " order " + std::to_string(rad_order) +
      ", angular cutoff " + number(rc_ang) + " order " + std::to_string(ang_order) + ", Rc_min " + number(rc_min);
}

Network::Network(const SpeciesFile &f) : nodes(f.nnodes), activations(f.activations), weights(f.weights)
{
  offsets.push_back(0);
  for (size_t l = 0; l + 1 < nodes.size(); ++l) offsets.push_back(offsets.back() + (nodes[l] + 1) * nodes[l + 1]);
  widest = *std::max_element(nodes.begin(), nodes.end());
}

size_t Network::work_size() const
{
  size_t values = 0;
  for (size_t l = 1; l < nodes.size(); ++l) values += nodes[l];
  return 2 * values + 2 * widest;
}

double Network::evaluate(const double *x, double *dx, double *work) const
{
  const int n_layers = (int) nodes.size();
  double *derivative = work + (work_size() - 2 * widest) / 2;
  double *delta = work + work_size() - 2 * widest, *next_delta = delta + widest;

  // forward: z = W x + b, y = f(z); every layer keeps y (in work) and f'(z) (in derivative)
  const double *in = x;
  size_t at = 0;
  for (int l = 0; l + 1 < n_layers; ++l) {
    const int n_in = nodes[l], n_out = nodes[l + 1];
    const double *w = weights.data() + offsets[l];
    double *out = work + at;
    std::copy(w + (size_t) n_in * n_out, w + (size_t) (n_in + 1) * n_out, out);
    for (int j = 0; j < n_in; ++j)
      for (int i = 0; i < n_out; ++i) out[i] += w[(size_t) j * n_out + i] * in[j];
    activate(activations[l], out, derivative + at, n_out);
    in = out;
    at += n_out;
  }
  const double output = in[0];

  // backward: delta = d output / dz of each layer, then d output / dx
  delta[0] = derivative[at - 1];
  for (int l = n_layers - 2; l >= 0; --l) {
    const int n_in = nodes[l], n_out = nodes[l + 1];
    const double *w = weights.data() + offsets[l];
    double *target = l == 0 ? dx : next_delta;
    at -= n_out;
    for (int j = 0; j < n_in; ++j) {
      double sum = 0.0;
      for (int i = 0; i < n_out; ++i) sum += w[(size_t) j * n_out + i] * delta[i];
      target[j] = l == 0 ? sum : sum * derivative[at - n_in + j];
    }
    std::swap(delta, next_delta);
  }
  return output;
}

double Model::energy(int s, const double *G, double *G_hat, double *dE_dG, double *work) const
{
  const int n = descriptor.n_features();
  const double *m = mean[s].data(), *inv = inv_std[s].data();
  for (int f = 0; f < n; ++f) G_hat[f] = (G[f] - m[f]) * inv[f];
  double out = networks[s].evaluate(G_hat, dE_dG, work);
  for (int f = 0; f < n; ++f) dE_dG[f] *= inv[f] * inv_scale;
  return out * inv_scale + shift + atomic_energy[s];
}

Model load_model(const std::string &name_template, const std::string &element, const FileReader &read)
{
  auto load = [&](const std::string &species) {
    const std::string path = file_for(name_template, species);
    return parse_species_file(path, read(path));
  };
  if (name_template.find(PLACEHOLDER) == std::string::npos)
    throw FileError("model '" + name_template + "' has no {element} in its name: give one file name template per " +
                    "model, e.g. /path/potential.{element}.nn.ascii");
  SpeciesFile first = load(element);
  Model model;
  model.first_path = first.path;
  model.descriptor = descriptor_of(first);
  if (model.descriptor.index_of(element) < 0)
    throw FileError(first.path + ": element " + element + " is not an environment species " +
                    list(first.env_species) + " of this potential");
  if (!(first.scale > 0)) throw FileError(first.path + ": training-set info, scale must be positive; got " +
                                          number(first.scale));
  model.inv_scale = 1.0 / first.scale;
  model.shift = first.shift;
  for (const std::string &species : model.descriptor.species) {
    SpeciesFile f = species == element ? first : load(species);
    if (f.species != species)
      throw FileError(f.path + ": the file is for species '" + f.species + "', but was given for '" + species + "'");
    check_same_potential(f, first);
    check_network(f);
    auto energy = std::find(f.trainset_species.begin(), f.trainset_species.end(), species);
    if (energy == f.trainset_species.end())
      throw FileError(f.path + ": training-set info has no atomic energy for " + species);
    model.atomic_energy.push_back(f.atomic_energies[energy - f.trainset_species.begin()]);
    model.networks.emplace_back(f);
    std::vector<double> inv(f.nsf);
    for (int i = 0; i < f.nsf; ++i) {
      double std = std::sqrt(std::max(f.sf_cov[i] - f.sf_avg[i] * f.sf_avg[i], 0.0));
      inv[i] = std <= DEGENERATE_STD ? 0.0 : 1.0 / std;
    }
    model.mean.push_back(f.sf_avg);
    model.inv_std.push_back(inv);
  }
  return model;
}

}    // namespace AenetCore
