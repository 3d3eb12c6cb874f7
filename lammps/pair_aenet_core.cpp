/* -----------------------------------------------------------------------------------------------
   pair_style aenet/core (see pair_aenet_core.h).

   Per centre atom i (local) with neighbours j (local or ghost, Rc_min < d_ij <= Rc):
     radial  G_n  = sum_j T_n(2 d_ij / Rc_rad - 1) fc(d_ij; Rc_rad)
     angular G_n  = sum_{j<k} T_n(cos theta_ijk) fc(d_ij; Rc_ang) fc(d_ik; Rc_ang)
   plus, with more than one species, copies weighted by the typespins s_j and s_j s_k; E_i is the
   network of i's species on the normalised features.  The features are summed per neighbour
   species (pair) once, for every model of a committee; each model then gives dE_i/dG, folded into
   one gradient per neighbour species (pair) and order, and one pass over the neighbours and
   triplets, with T_n and dT_n cached from the feature pass, turns all of them into dE_i/dr_j.

   Forces go into a per-atom, per-model buffer that includes ghosts; a reverse communication of
   that buffer sums ghost contributions into their owners, so only local forces are written to
   atom->f and the result is exact with newton on or off.  The virial is computed directly,
   W_i = -sum_j r_ij (x) dE_i/dr_j, and all of it is assigned to atom i.  Potential files are read
   on rank 0 and broadcast, so every rank parses the same bytes and fails alike.
------------------------------------------------------------------------------------------------ */

#include "pair_aenet_core.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

using namespace LAMMPS_NS;

namespace {

const int N_EXTRA = 3;    // compute pair: max force std, mean force std, energy std
const double PI = 3.14159265358979323846;
const int ANGULAR_COPIES = 4;    // copies of the angular feature sums (see compute_features)

// T_n(x) and dT_n/dx = n U_{n-1}(x) for n < n_terms, by the three-term recurrences (exact at +-1),
// stored in t and dt, and w T_n(x) added to sum.  The terms stay in registers: reading them back
// from t would wait for the stores to complete.
inline void chebyshev(double x, int n_terms, double w, double *t, double *dt, double *sum)
{
  const double x2 = 2.0 * x;
  double t_previous = 1.0, t_current = x, u_previous = 0.0, u_current = 1.0;    // T_{n-2}, T_{n-1}, U_{n-3}, U_{n-2}
  t[0] = 1.0;
  dt[0] = 0.0;
  sum[0] += w;
  if (n_terms > 1) {
    t[1] = x;
    dt[1] = 1.0;
    sum[1] += x * w;
  }
  double order = 2.0;
  for (int n = 2; n < n_terms; ++n, order += 1.0) {
    const double t_next = x2 * t_current - t_previous, u_next = x2 * u_current - u_previous;
    t[n] = t_next;
    dt[n] = order * u_next;
    sum[n] += t_next * w;
    t_previous = t_current;
    t_current = t_next;
    u_previous = u_current;
    u_current = u_next;
  }
}

// chebyshev without the sum for N arguments x at once: t and dt hold order n of argument a at [n * N + a];
// u: scratch for 3 rows of U.
inline void chebyshev_rows(int N, const double *x, int n_terms, double *t, double *dt, double *u)
{
  double *u_previous = u, *u_current = u + N, *u_next = u + 2 * N;    // U_{n-3}, U_{n-2}, U_{n-1}
  for (int a = 0; a < N; ++a) {
    t[a] = 1.0;
    dt[a] = 0.0;
    u_previous[a] = 0.0;
    u_current[a] = 1.0;
  }
  if (n_terms > 1)
    for (int a = 0; a < N; ++a) {
      t[N + a] = x[a];
      dt[N + a] = 1.0;
    }
  double order = 2.0;
  for (int n = 2; n < n_terms; ++n, order += 1.0) {
    const double *t1 = t + (size_t) (n - 1) * N, *t2 = t + (size_t) (n - 2) * N;
    double *tn = t + (size_t) n * N, *dtn = dt + (size_t) n * N;
    for (int a = 0; a < N; ++a) {
      tn[a] = 2.0 * x[a] * t1[a] - t2[a];
      u_next[a] = 2.0 * x[a] * u_current[a] - u_previous[a];
      dtn[a] = order * u_next[a];
    }
    std::swap(u_previous, u_current);
    std::swap(u_current, u_next);
  }
}

// The gradient terms of one triplet (j, k) for SLOTS models at once (0: `slots` at run time):
// with S = sum_n g_n T_n(cos) and S' = sum_n g_n dT_n(cos),
//   dE/dr_j = S' w (u_k - cos u_j) / d_j + S fc_j' fc_k u_j   (w = fc_j fc_k), and likewise for k,
// accumulated as a part along the neighbour's own unit vector and a part across it.
template <int SLOTS>
inline void triplet_gradient(int slots, int n_terms, const double *__restrict t, const double *__restrict g,
                             double cos, double w_j, double w_k, double wd_j, double wd_k,
                             const double *u_j, const double *u_k, double *__restrict along_j,
                             double *__restrict across_j, double *__restrict along_k,
                             double *__restrict across_k, double *__restrict scratch)
{
  const int L = SLOTS > 0 ? SLOTS : slots;
  double local[SLOTS > 0 ? 2 * SLOTS : 1];
  double *sum = SLOTS > 0 ? local : scratch, *sum_d = sum + L;
  const double *dt = t + n_terms;
  for (int l = 0; l < L; ++l) sum[l] = sum_d[l] = 0.0;
  for (int l = 0; l < L; ++l) sum[l] += g[l];    // T_0 = 1, dT_0 = 0
  for (int o = 1; o < n_terms; ++o)
    for (int l = 0; l < L; ++l) {
      sum[l] += g[o * L + l] * t[o];
      sum_d[l] += g[o * L + l] * dt[o];
    }
  for (int l = 0; l < L; ++l) {
    const double alpha_j = sum_d[l] * wd_j, alpha_k = sum_d[l] * wd_k;
    along_j[l] += sum[l] * w_j - alpha_j * cos;
    along_k[l] += sum[l] * w_k - alpha_k * cos;
    for (int c = 0; c < 3; ++c) {
      across_j[c * L + l] += alpha_j * u_k[c];
      across_k[c * L + l] += alpha_k * u_j[c];
    }
  }
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairAenetCore::PairAenetCore(LAMMPS *lmp) : Pair(lmp)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;
  centroidstressflag = CENTROID_NOTAVAIL;    // each centre's virial goes to the centre, not a centroid form
  nextra = N_EXTRA;
  pvector = new double[N_EXTRA]();
}

PairAenetCore::~PairAenetCore()
{
  delete[] pvector;
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

/* ---------------------------------------------------------------------- */

void PairAenetCore::settings(int narg, char **)
{
  if (narg != 0) error->all(FLERR, "pair_style aenet/core takes no arguments; the models go to pair_coeff");
}

/* ----------------------------------------------------------------------
   pair_coeff * * <model> [<model> ...] <element or NULL> x ntypes
------------------------------------------------------------------------- */

void PairAenetCore::coeff(int narg, char **arg)
{
  const int ntypes = atom->ntypes;
  if (narg < 3 + ntypes)
    error->all(FLERR, "pair_coeff aenet/core: expected * * <model> [<model> ...] followed by {} element symbols "
               "or NULL, one per atom type; got {} arguments", ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff aenet/core must start with * * (one pair_coeff for all atom types)");

  char **elements = arg + narg - ntypes;
  std::string first_element;
  for (int t = 0; t < ntypes && first_element.empty(); ++t)
    if (strcmp(elements[t], "NULL") != 0) first_element = elements[t];
  if (first_element.empty()) error->all(FLERR, "pair_coeff aenet/core maps every atom type to NULL");

  load_models(std::vector<std::string>(arg + 2, elements), first_element);
  map_types(elements);
}

void PairAenetCore::load_models(const std::vector<std::string> &templates, const std::string &element)
{
  models.clear();
  for (const std::string &name : templates) {
    try {
      models.push_back(AenetCore::load_model(name, element, [this](const std::string &path) { return read(path); }));
    } catch (AenetCore::FileError &e) {
      error->all(FLERR, std::string("pair_coeff aenet/core: ") + e.what());
    }
    const AenetCore::Model &first = models.front(), &last = models.back();
    if (!(last.descriptor == first.descriptor))
      error->all(FLERR, "pair_coeff aenet/core: the models of a committee must share the descriptor, but " +
                 first.first_path + " has " + first.descriptor.summary() + " and " + last.first_path + " has " +
                 last.descriptor.summary());
  }
  descriptor = models.front().descriptor;
  spins = descriptor.typespins();
  n_models = (int) models.size();
  n_species = (int) descriptor.species.size();
  n_rad = descriptor.rad_order + 1;
  n_ang = descriptor.ang_order + 1;
  comm_reverse = comm_reverse_off = 3 * n_models;    // reverse comm of the model forces, newton on or off

  const int F = descriptor.n_features();
  size_t work = 0;
  for (auto &model : models)
    for (auto &network : model.networks) work = std::max(work, network.work_size());
  rad_by_species.assign(n_species * n_rad, 0.0);
  ang_by_pair.assign(ANGULAR_COPIES * n_species * n_species * n_ang, 0.0);
  features.assign(F, 0.0);
  features_hat.assign(F, 0.0);
  dE_dG.assign((size_t) n_models * F, 0.0);
  network_work.assign(work, 0.0);
  // models padded to a vector-friendly count; the padding keeps zero gradients
  n_slots = n_models == 1 ? 1 : n_models <= 2 ? 2 : n_models <= 4 ? 4 : n_models <= 6 ? 6 : n_models <= 8 ? 8 : n_models;
  rad_gradient.assign((size_t) n_species * n_rad * n_slots, 0.0);
  ang_gradient.assign((size_t) n_species * n_species * n_ang * n_slots, 0.0);
  centre_energies.assign(n_models, 0.0);
  energy_deviations.assign(n_models, 0.0);
  reduction.assign(2 * (n_models + 2), 0.0);
  sums.assign(6 * n_slots, 0.0);

  if (comm->me == 0)
    utils::logmesg(lmp, "pair aenet/core: " + std::to_string(n_models) + " model(s), " + descriptor.summary() +
                   "\n");
}

/* ----------------------------------------------------------------------
   a file read on rank 0 and broadcast: every rank parses the same bytes (or fails alike)
------------------------------------------------------------------------- */

std::string PairAenetCore::read(const std::string &path)
{
  std::string bytes, message;
  if (comm->me == 0) {
    try {
      bytes = AenetCore::read_file(path);
      if (bytes.size() > (size_t) INT_MAX) message = "potential file " + path + " is too large";
    } catch (AenetCore::FileError &e) {
      message = e.what();
    }
  }
  broadcast(message);
  if (!message.empty()) throw AenetCore::FileError(message);
  broadcast(bytes);
  return bytes;
}

void PairAenetCore::broadcast(std::string &text)
{
  int size = (int) text.size();
  MPI_Bcast(&size, 1, MPI_INT, 0, world);
  text.resize(size);
  if (size > 0) MPI_Bcast(&text[0], size, MPI_CHAR, 0, world);
}

void PairAenetCore::map_types(char **elements)
{
  const int ntypes = atom->ntypes;
  species_of_type.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; ++t) {
    if (strcmp(elements[t - 1], "NULL") == 0) continue;
    species_of_type[t] = descriptor.index_of(elements[t - 1]);
    if (species_of_type[t] < 0)
      error->all(FLERR, "pair_coeff aenet/core: element " + std::string(elements[t - 1]) + " of atom type " +
                 std::to_string(t) + " is not an environment species of " + models.front().first_path +
                 " (" + descriptor.summary() + ")");
  }

  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
  memory->create(setflag, ntypes + 1, ntypes + 1, "pair:setflag");
  memory->create(cutsq, ntypes + 1, ntypes + 1, "pair:cutsq");
  allocated = 1;
  for (int i = 1; i <= ntypes; ++i)
    for (int j = 1; j <= ntypes; ++j) setflag[i][j] = species_of_type[i] >= 0 && species_of_type[j] >= 0;
}

/* ---------------------------------------------------------------------- */

void PairAenetCore::init_style()
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style aenet/core requires 'units metal' (eV, Angstrom)");
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairAenetCore::init_one(int, int)
{
  return descriptor.rc_max();
}

/* ---------------------------------------------------------------------- */

void PairAenetCore::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const size_t nall = atom->nlocal + atom->nghost, stride = 3 * n_models;
  if (model_forces.size() < nall * stride) model_forces.resize(nall * stride);
  std::fill(model_forces.begin(), model_forces.begin() + nall * stride, 0.0);
  std::fill(energy_deviations.begin(), energy_deviations.end(), 0.0);

  for (int ii = 0; ii < list->inum; ++ii) {
    const int i = list->ilist[ii], species = species_of_type[atom->type[i]];
    if (species < 0) continue;
    gather_neighbours(i);
    compute_features();
    evaluate_models(i, species);
    if (n_slots == 1)
      backpropagate<1>();
    else if (n_slots == 2)
      backpropagate<2>();
    else if (n_slots == 4)
      backpropagate<4>();
    else if (n_slots == 6)
      backpropagate<6>();
    else if (n_slots == 8)
      backpropagate<8>();
    else
      backpropagate<0>();
    scatter(i);
  }
  comm->reverse_comm(this);
  finish_forces();
}

/* ----------------------------------------------------------------------
   the neighbours of i within the cutoffs, those within Rc_ang first
------------------------------------------------------------------------- */

void PairAenetCore::gather_neighbours(int i)
{
  double **x = atom->x;
  const int *type = atom->type;
  const int *jlist = list->firstneigh[i], jnum = list->numneigh[i];
  const double rc_ang = descriptor.rc_ang, rc_max = descriptor.rc_max();
  const double rmin_sq = descriptor.rc_min * descriptor.rc_min, rmax_sq = rc_max * rc_max;
  const double ang_scale = PI / rc_ang, ang_slope = -0.5 * PI / rc_ang;
  if ((int) neighbours.size() < jnum) neighbours.resize(jnum);

  n_neighbours = n_angular = 0;
  for (int jj = 0; jj < jnum; ++jj) {
    const int j = jlist[jj] & NEIGHMASK, species = species_of_type[type[j]];
    if (species < 0) continue;
    Neighbour n;
    for (int c = 0; c < 3; ++c) n.r[c] = x[j][c] - x[i][c];
    const double rsq = n.r[0] * n.r[0] + n.r[1] * n.r[1] + n.r[2] * n.r[2];
    if (rsq <= rmin_sq || rsq > rmax_sq) continue;
    n.d = std::sqrt(rsq);
    n.inv_d = 1.0 / n.d;
    for (int c = 0; c < 3; ++c) n.u[c] = n.r[c] * n.inv_d;
    n.atom = j;
    n.species = species;
    if (n.d <= rc_ang) {
      const double arg = ang_scale * n.d;
      n.fc_ang = 0.5 * std::cos(arg) + 0.5;
      n.dfc_ang = ang_slope * std::sin(arg);
      neighbours[n_neighbours++] = neighbours[n_angular];
      neighbours[n_angular++] = n;
    } else {
      n.fc_ang = n.dfc_ang = 0.0;
      neighbours[n_neighbours++] = n;
    }
  }
}

/* ----------------------------------------------------------------------
   raw features of the centre; caches d(T_n fc)/dd per neighbour and T_n, dT_n per triplet
------------------------------------------------------------------------- */

void PairAenetCore::compute_features()
{
  const double rc = descriptor.rc_rad, x_scale = 2.0 / rc, arg_scale = PI / rc, slope = -0.5 * PI / rc;
  if (rad_terms.size() < (size_t) n_neighbours * n_rad) rad_terms.resize((size_t) n_neighbours * n_rad);
  const size_t n_triplets = (size_t) n_angular * (n_angular - 1) / 2;
  if (triplet_poly.size() < n_triplets * 2 * n_ang) triplet_poly.resize(n_triplets * 2 * n_ang);
  std::fill(rad_by_species.begin(), rad_by_species.end(), 0.0);
  std::fill(ang_by_pair.begin(), ang_by_pair.end(), 0.0);

  // radial: the polynomials of all neighbours at once, order by order (no chain of latencies);
  // a neighbour beyond Rc_rad gets fc = 0
  const int N = n_neighbours;
  if (rad_poly.size() < (size_t) (6 + 2 * n_rad) * N) rad_poly.resize((size_t) (6 + 2 * n_rad) * N);
  double *x = rad_poly.data(), *fc = x + N, *dfc = fc + N, *t = dfc + N, *dt = t + (size_t) N * n_rad;
  for (int a = 0; a < N; ++a) {
    const double d = neighbours[a].d, arg = arg_scale * d, cos = std::cos(arg), sin = std::sin(arg);
    const bool inside = d <= rc;
    x[a] = inside ? x_scale * d - 1.0 : 0.0;
    fc[a] = inside ? 0.5 * cos + 0.5 : 0.0;
    dfc[a] = inside ? slope * sin : 0.0;
  }
  chebyshev_rows(N, x, n_rad, t, dt, dt + (size_t) N * n_rad);
  for (int a = 0; a < N; ++a) {
    double *row = rad_by_species.data() + neighbours[a].species * n_rad;
    for (int o = 0; o < n_rad; ++o) row[o] += t[(size_t) o * N + a] * fc[a];
  }
  for (int o = 0; o < n_rad; ++o)
    for (int a = 0; a < N; ++a)
      rad_terms[(size_t) o * N + a] = dt[(size_t) o * N + a] * (x_scale * fc[a]) + t[(size_t) o * N + a] * dfc[a];

  double *cached = triplet_poly.data();
  for (int a = 0; a < n_angular; ++a) {
    const Neighbour &j = neighbours[a];
    for (int b = a + 1; b < n_angular; ++b, cached += 2 * n_ang) {
      const Neighbour &k = neighbours[b];
      const double cos = j.u[0] * k.u[0] + j.u[1] * k.u[1] + j.u[2] * k.u[2], w = j.fc_ang * k.fc_ang;
      // consecutive triplets add to different copies: no chain of stores and loads between them
      const int copy = b % ANGULAR_COPIES;
      chebyshev(cos, n_ang, w, cached, cached + n_ang,
                ang_by_pair.data() + ((copy * n_species + j.species) * n_species + k.species) * n_ang);
    }
  }

  // [radial, angular] and, with several species, [radial weighted by s_j, angular by s_j s_k]
  double *G = features.data();
  std::fill(features.begin(), features.end(), 0.0);
  const int weighted = n_rad + n_ang;
  for (int s = 0; s < n_species; ++s)
    for (int o = 0; o < n_rad; ++o) {
      const double g = rad_by_species[s * n_rad + o];
      G[o] += g;
      if (descriptor.multi()) G[weighted + o] += spins[s] * g;
    }
  for (int copy = 0; copy < ANGULAR_COPIES; ++copy)
    for (int s = 0; s < n_species; ++s)
      for (int p = 0; p < n_species; ++p)
        for (int o = 0; o < n_ang; ++o) {
          const double g = ang_by_pair[((copy * n_species + s) * n_species + p) * n_ang + o];
          G[n_rad + o] += g;
          if (descriptor.multi()) G[weighted + n_rad + o] += spins[s] * spins[p] * g;
        }
}

/* ----------------------------------------------------------------------
   each model's E_i and dE_i/dG, folded per neighbour species (pair): [.., order, model]
------------------------------------------------------------------------- */

void PairAenetCore::evaluate_models(int i, int species)
{
  const int F = descriptor.n_features(), weighted = n_rad + n_ang, M = n_models;
  const bool multi = descriptor.multi();
  double energy = 0.0;
  for (int m = 0; m < M; ++m) {
    const double *g = dE_dG.data() + (size_t) m * F;
    centre_energies[m] = models[m].energy(species, features.data(), features_hat.data(),
                                          dE_dG.data() + (size_t) m * F, network_work.data());
    energy += centre_energies[m];
    for (int s = 0; s < n_species; ++s)
      for (int o = 0; o < n_rad; ++o)
        rad_gradient[(s * n_rad + o) * n_slots + m] = g[o] + (multi ? spins[s] * g[weighted + o] : 0.0);
    for (int s = 0; s < n_species; ++s)
      for (int p = 0; p < n_species; ++p)
        for (int o = 0; o < n_ang; ++o)
          ang_gradient[((s * n_species + p) * n_ang + o) * n_slots + m] =
              g[n_rad + o] + (multi ? spins[s] * spins[p] * g[weighted + n_rad + o] : 0.0);
  }
  energy /= M;
  for (int m = 0; m < M; ++m) energy_deviations[m] += centre_energies[m] - energy;
  if (eflag_global) eng_vdwl += energy;
  if (eflag_atom) eatom[i] += energy;
}

/* ----------------------------------------------------------------------
   dE_i/dr_j of every model for every neighbour j = along[j] u_j + across[j], the models
   innermost ([j][l], [j][xyz][l]) and padded to SLOTS so that the compiler vectorises over them
------------------------------------------------------------------------- */

template <int SLOTS> void PairAenetCore::backpropagate()
{
  const int L = SLOTS > 0 ? SLOTS : n_slots;
  if (along.size() < (size_t) n_neighbours * L) along.resize((size_t) n_neighbours * L);
  if (across.size() < (size_t) n_neighbours * 3 * L) across.resize((size_t) n_neighbours * 3 * L);
  std::fill(along.begin(), along.begin() + (size_t) n_neighbours * L, 0.0);
  std::fill(across.begin(), across.begin() + (size_t) n_neighbours * 3 * L, 0.0);

  // radial: dE/dd_j = sum_n g_n d(T_n fc)/dd
  for (int a = 0; a < n_neighbours; ++a) {
    const Neighbour &n = neighbours[a];
    if (n.d > descriptor.rc_rad) continue;
    const double *g = rad_gradient.data() + (size_t) n.species * n_rad * L;
    double *to = along.data() + (size_t) a * L;
    for (int o = 0; o < n_rad; ++o)
      for (int l = 0; l < L; ++l) to[l] += g[o * L + l] * rad_terms[(size_t) o * n_neighbours + a];
  }

  // j's terms collect in a local copy over its triplets (registers for few slots), then join along/across
  double local[SLOTS > 0 ? 4 * SLOTS : 1];
  double *along_j = SLOTS > 0 ? local : sums.data() + 2 * L, *across_j = along_j + L;
  const double *cached = triplet_poly.data();
  for (int a = 0; a < n_angular; ++a) {
    const Neighbour &j = neighbours[a];
    const double *g_j = ang_gradient.data() + (size_t) j.species * n_species * n_ang * L;
    std::copy(along.data() + (size_t) a * L, along.data() + (size_t) (a + 1) * L, along_j);
    std::copy(across.data() + (size_t) a * 3 * L, across.data() + (size_t) (a + 1) * 3 * L, across_j);
    for (int b = a + 1; b < n_angular; ++b, cached += 2 * n_ang) {
      const Neighbour &k = neighbours[b];
      const double cos = j.u[0] * k.u[0] + j.u[1] * k.u[1] + j.u[2] * k.u[2], w = j.fc_ang * k.fc_ang;
      triplet_gradient<SLOTS>(L, n_ang, cached, g_j + (size_t) k.species * n_ang * L, cos,
                              j.dfc_ang * k.fc_ang, j.fc_ang * k.dfc_ang, w * j.inv_d, w * k.inv_d, j.u, k.u,
                              along_j, across_j, along.data() + (size_t) b * L, across.data() + (size_t) b * 3 * L,
                              sums.data());
    }
    std::copy(along_j, along_j + L, along.data() + (size_t) a * L);
    std::copy(across_j, across_j + 3 * L, across.data() + (size_t) a * 3 * L);
  }
}

/* ----------------------------------------------------------------------
   forces of centre i into the per-atom model buffer; its virial
------------------------------------------------------------------------- */

void PairAenetCore::scatter(int i)
{
  const int M = n_models, L = n_slots;
  const double inv_m = 1.0 / M;
  double *centre = model_forces.data() + (size_t) i * 3 * M;
  double w[6] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  for (int a = 0; a < n_neighbours; ++a) {
    const Neighbour &n = neighbours[a];
    const double *along_a = along.data() + (size_t) a * L, *across_a = across.data() + (size_t) a * 3 * L;
    double *target = model_forces.data() + (size_t) n.atom * 3 * M, mean[3];
    for (int c = 0; c < 3; ++c) {
      mean[c] = 0.0;
      for (int m = 0; m < M; ++m) {
        const double g = along_a[m] * n.u[c] + across_a[c * L + m];
        target[m * 3 + c] -= g;
        centre[m * 3 + c] += g;
        mean[c] += g;
      }
      mean[c] *= inv_m;
    }
    w[0] -= n.r[0] * mean[0];
    w[1] -= n.r[1] * mean[1];
    w[2] -= n.r[2] * mean[2];
    w[3] -= n.r[0] * mean[1];
    w[4] -= n.r[0] * mean[2];
    w[5] -= n.r[1] * mean[2];
  }
  for (int c = 0; c < 6; ++c) {
    if (vflag_global) virial[c] += w[c];
    if (vflag_atom) vatom[i][c] += w[c];
  }
}

/* ----------------------------------------------------------------------
   after the reverse comm: the committee mean into atom->f, the spread per atom and overall
------------------------------------------------------------------------- */

void PairAenetCore::finish_forces()
{
  const int nlocal = atom->nlocal, M = n_models;
  double **f = atom->f;
  int flag = 0, cols = 0;
  const int custom = atom->find_custom("force_std", flag, cols);
  if (custom >= 0 && (flag != 1 || cols != 0))
    error->all(FLERR, "pair aenet/core: the per-atom property force_std must be a double vector (d_force_std)");
  double *force_std = custom >= 0 ? atom->dvector[custom] : nullptr;

  double local_max = 0.0, local_sum = 0.0;
  int evaluated = 0;
  for (int i = 0; i < nlocal; ++i) {
    const double *fm = model_forces.data() + (size_t) i * 3 * M;
    double spread = 0.0;
    for (int c = 0; c < 3; ++c) {
      double mean = 0.0, variance = 0.0;
      for (int m = 0; m < M; ++m) mean += fm[m * 3 + c];
      mean /= M;
      for (int m = 0; m < M; ++m) variance += (fm[m * 3 + c] - mean) * (fm[m * 3 + c] - mean);
      f[i][c] += mean;
      spread += variance / M;
    }
    spread = std::sqrt(spread);
    if (force_std) force_std[i] = spread;
    if (species_of_type[atom->type[i]] >= 0) {
      local_max = std::max(local_max, spread);
      local_sum += spread;
      ++evaluated;
    }
  }
  if (eflag_global) committee_spread(local_max, local_sum, evaluated);
}

/* ----------------------------------------------------------------------
   pvector: compute pair sums it over ranks, so rank 0 holds the totals and the others 0
------------------------------------------------------------------------- */

void PairAenetCore::committee_spread(double local_max, double local_sum, int evaluated)
{
  std::fill(pvector, pvector + N_EXTRA, 0.0);
  if (n_models == 1) return;
  const int M = n_models;
  double max_std = 0.0, *local = reduction.data(), *total = local + M + 2;
  local[0] = local_sum;
  local[1] = evaluated;
  std::copy(energy_deviations.begin(), energy_deviations.end(), local + 2);
  MPI_Allreduce(&local_max, &max_std, 1, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(local, total, M + 2, MPI_DOUBLE, MPI_SUM, world);
  if (comm->me != 0) return;
  double mean = 0.0, variance = 0.0;
  for (int m = 0; m < M; ++m) mean += total[2 + m] / M;
  for (int m = 0; m < M; ++m) variance += (total[2 + m] - mean) * (total[2 + m] - mean) / M;
  pvector[0] = max_std;
  pvector[1] = total[1] > 0 ? total[0] / total[1] : 0.0;
  pvector[2] = std::sqrt(variance);
}

/* ---------------------------------------------------------------------- */

int PairAenetCore::pack_reverse_comm(int n, int first, double *buf)
{
  const size_t stride = 3 * n_models;
  const double *from = model_forces.data() + (size_t) first * stride;
  std::copy(from, from + n * stride, buf);
  return (int) (n * stride);
}

void PairAenetCore::unpack_reverse_comm(int n, int *list, double *buf)
{
  const size_t stride = 3 * n_models;
  for (int a = 0; a < n; ++a) {
    double *to = model_forces.data() + (size_t) list[a] * stride;
    for (size_t c = 0; c < stride; ++c) to[c] += buf[a * stride + c];
  }
}

double PairAenetCore::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += sizeof(double) * (model_forces.capacity() + rad_terms.capacity() + triplet_poly.capacity() +
                             along.capacity() + across.capacity());
  bytes += sizeof(Neighbour) * neighbours.capacity();
  return bytes;
}
