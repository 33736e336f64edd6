// hambench._core: compiled kernels of hambench (neighbour lists, DFT file readers, block gather/scatter).
#include "bindings.hpp"

#ifndef HAMBENCH_VERSION
#define HAMBENCH_VERSION "dev"
#endif

PYBIND11_MODULE(_core, m) {
    m.doc() = "Compiled kernels of hambench.";
    m.attr("__version__") = HAMBENCH_VERSION;
    hambench::bind_neighbors(m);
    hambench::bind_scfout(m);
    hambench::bind_h5legacy(m);
    hambench::bind_blocks(m);
}
