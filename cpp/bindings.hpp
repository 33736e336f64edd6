// Each C++ source of hambench._core registers its own Python bindings here.
#pragma once
#include <pybind11/pybind11.h>

namespace hambench {
void bind_neighbors(pybind11::module_ &m);
void bind_scfout(pybind11::module_ &m);
void bind_h5legacy(pybind11::module_ &m);
void bind_blocks(pybind11::module_ &m);
}  // namespace hambench
