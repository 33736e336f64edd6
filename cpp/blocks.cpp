// Per-structure checks of edge blocks in one pass: finiteness and Hermitian pairing H_ji(-R) = H_ij(R)^H.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "bindings.hpp"

namespace py = pybind11;

namespace hambench {
namespace {

inline bool finite(double x) { return std::isfinite(x); }
inline bool finite(const std::complex<double> &x) { return std::isfinite(x.real()) && std::isfinite(x.imag()); }
inline double conj(double x) { return x; }
inline std::complex<double> conj(const std::complex<double> &x) { return std::conj(x); }

template <typename T>
py::tuple pair_check(py::array_t<T, py::array::c_style | py::array::forcecast> blocks,
                     py::array_t<int64_t, py::array::c_style | py::array::forcecast> ptr,
                     py::array_t<int64_t, py::array::c_style | py::array::forcecast> ni,
                     py::array_t<int64_t, py::array::c_style | py::array::forcecast> nj,
                     py::array_t<int64_t, py::array::c_style | py::array::forcecast> partner) {
    const int64_t n = ni.size();
    if (nj.size() != n || partner.size() != n || ptr.size() != n + 1)
        throw std::invalid_argument("pair_check: ni, nj, partner need one entry per edge and ptr one more");
    const T *a = blocks.data();
    const int64_t *p = ptr.data(), *r = ni.data(), *c = nj.data(), *f = partner.data();
    const int64_t size = blocks.size();
    for (int64_t e = 0; e < n; ++e) {
        if (p[e] < 0 || p[e + 1] > size || p[e + 1] - p[e] != r[e] * c[e])
            throw std::invalid_argument("pair_check: block pointers do not match the block shapes and array size");
        if (f[e] >= n) throw std::invalid_argument("pair_check: partner index out of range");
    }
    double worst = 0.0;
    int64_t worst_edge = -1, nonfinite_edge = -1;
    {
        py::gil_scoped_release release;
        for (int64_t e = 0; e < n; ++e) {
            const T *x = a + p[e];
            const int64_t rows = r[e], cols = c[e];
            if (nonfinite_edge < 0) {
                for (int64_t k = 0; k < rows * cols; ++k)
                    if (!finite(x[k])) { nonfinite_edge = e; break; }
            }
            const int64_t g = f[e];
            if (g < 0) continue;
            if (r[g] != cols || c[g] != rows) {  // a partner of another shape can never match: report it
                if (worst < INFINITY) { worst = INFINITY; worst_edge = e; }
                continue;
            }
            const T *y = a + p[g];
            double d = 0.0;
            for (int64_t i = 0; i < rows; ++i)
                for (int64_t j = 0; j < cols; ++j) {
                    const double v = std::abs(x[i * cols + j] - conj(y[j * rows + i]));
                    if (v > d) d = v;  // NaN never wins: the finiteness check reports it
                }
            if (d > worst) { worst = d; worst_edge = e; }
        }
    }
    return py::make_tuple(worst, worst_edge, nonfinite_edge);
}

}  // namespace

void bind_blocks(py::module_ &m) {
    const char *doc = R"doc(Check the edge blocks of one structure in one pass.

``pair_check(blocks, ptr, ni, nj, partner) -> (worst, worst_edge, nonfinite_edge)``: block ``e`` is
``blocks[ptr[e]:ptr[e+1]]`` as an ``ni[e] x nj[e]`` row-major matrix; ``partner[e]`` the edge (j, i, -R) of
edge (i, j, R) or -1. ``worst`` is the largest |B_e - conj(B_partner)^T| element over all edges with a partner
(``inf`` if a partner's shape does not fit), ``worst_edge`` the first edge reaching it (-1: none above 0),
``nonfinite_edge`` the first edge holding a NaN/Inf (-1: none). float64 or complex128 blocks; runs without
the GIL.)doc";
    m.def("pair_check", &pair_check<std::complex<double>>, py::arg("blocks").noconvert(), py::arg("ptr"),
          py::arg("ni"), py::arg("nj"), py::arg("partner"), doc);
    m.def("pair_check", &pair_check<double>, py::arg("blocks"), py::arg("ptr"), py::arg("ni"), py::arg("nj"),
          py::arg("partner"), doc);
}

}  // namespace hambench
