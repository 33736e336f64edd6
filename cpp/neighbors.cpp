// Periodic neighbour list with a Cartesian cell list.
//
// Returns every (i, j, R) with |r_j + R . cell - r_i| < cutoff (R integer, zero along non-periodic
// directions), the self pair (i, i, 0) included. Atoms are first wrapped into the home cell along
// periodic directions; images of the wrapped atoms are generated only as far as the cutoff can reach
// (the spacing of lattice planes bounds the shift), binned in cubes of edge `cutoff`, and each home atom
// searches the 27 surrounding bins. Work and memory are O(N) for a fixed density and cutoff.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/pybind11.h>

#include "bindings.hpp"

namespace py = pybind11;

namespace hambench {
namespace {

using Vec3 = std::array<double, 3>;

Vec3 cross(const Vec3 &a, const Vec3 &b) {
    return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}
double dot(const Vec3 &a, const Vec3 &b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }
double norm(const Vec3 &a) { return std::sqrt(dot(a, a)); }

// Completes the periodic lattice vectors to a basis of R^3: non-periodic vectors that are degenerate
// are replaced by unit vectors orthogonal to the rest. Only periodic vectors are ever used as shifts.
std::array<Vec3, 3> complete_basis(std::array<Vec3, 3> a, const std::array<bool, 3> &pbc) {
    int nper = 0;
    for (int k = 0; k < 3; ++k) nper += pbc[k];
    for (int k = 0; k < 3; ++k)
        if (pbc[k] && norm(a[k]) < 1e-12)
            throw std::invalid_argument("lattice vector " + std::to_string(k) + " is zero along a periodic direction");
    if (nper == 0) return {Vec3{1, 0, 0}, Vec3{0, 1, 0}, Vec3{0, 0, 1}};
    // Gram-Schmidt on the periodic vectors, to find a complement.
    std::vector<Vec3> ortho;
    for (int k = 0; k < 3; ++k) {
        if (!pbc[k]) continue;
        Vec3 v = a[k];
        for (const auto &u : ortho) {
            double c = dot(v, u);
            for (int d = 0; d < 3; ++d) v[d] -= c * u[d];
        }
        double n = norm(v);
        if (n < 1e-10 * norm(a[k])) throw std::invalid_argument("periodic lattice vectors are linearly dependent");
        for (int d = 0; d < 3; ++d) v[d] /= n;
        ortho.push_back(v);
    }
    const Vec3 axes[3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    for (int k = 0; k < 3; ++k) {
        if (pbc[k]) continue;
        // keep a given non-periodic vector if it is independent of the others, else replace it
        std::vector<Vec3> cand;
        if (norm(a[k]) > 1e-12) cand.push_back(a[k]);
        for (const auto &ax : axes) cand.push_back(ax);
        bool done = false;
        for (const auto &c0 : cand) {
            Vec3 v = c0;
            for (const auto &u : ortho) {
                double c = dot(v, u);
                for (int d = 0; d < 3; ++d) v[d] -= c * u[d];
            }
            double n = norm(v);
            if (n > 1e-6 * norm(c0)) {
                for (int d = 0; d < 3; ++d) v[d] /= n;
                ortho.push_back(v);
                a[k] = (&c0 == &cand[0] && norm(a[k]) > 1e-12) ? a[k] : v;
                done = true;
                break;
            }
        }
        if (!done) throw std::runtime_error("could not complete the lattice basis");
    }
    return a;
}

struct Pairs {
    std::vector<int32_t> src, dst, shift;
};

// Pairs closer than rc_exact, found with a cell list of search radius rc = rc_exact + slack between wrapped
// atoms and images. The wrap moves positions by rounding (at most `slack`), so a pair whose wrapped distance
// lies within slack of rc_exact is re-measured on the positions as given (see build()).
Pairs build_candidates(const double *pos, int64_t n, const double *cell_ptr, const std::array<bool, 3> &pbc,
                       double rc, double rc_exact, double slack) {
    if (!(rc > 0.0) || !std::isfinite(rc)) throw std::invalid_argument("cutoff must be a positive finite number");
    std::array<Vec3, 3> a;
    for (int k = 0; k < 3; ++k)
        for (int d = 0; d < 3; ++d) a[k][d] = cell_ptr[3 * k + d];
    a = complete_basis(a, pbc);
    const double vol = dot(a[0], cross(a[1], a[2]));
    if (std::abs(vol) < 1e-12) throw std::invalid_argument("cell is singular");
    // reciprocal rows b_k with b_k . a_l = delta_kl
    std::array<Vec3, 3> b = {cross(a[1], a[2]), cross(a[2], a[0]), cross(a[0], a[1])};
    for (auto &v : b)
        for (auto &x : v) x /= vol;

    std::vector<double> frac(3 * n);
    std::vector<int32_t> offset(3 * n, 0);  // r_i = wrapped_i + offset_i . a
    std::vector<double> wrapped(3 * n);
    for (int64_t i = 0; i < n; ++i) {
        Vec3 r = {pos[3 * i], pos[3 * i + 1], pos[3 * i + 2]};
        for (int d = 0; d < 3; ++d)
            if (!std::isfinite(r[d])) throw std::invalid_argument("positions contain NaN or Inf");
        for (int k = 0; k < 3; ++k) {
            double f = dot(b[k], r);
            if (pbc[k]) {
                double fl = std::floor(f);
                if (!(std::abs(fl) < 1e9))
                    throw std::invalid_argument("atom " + std::to_string(i) +
                                                " lies more than 1e9 cells away along lattice vector " +
                                                std::to_string(k) + ": wrap the positions first");
                offset[3 * i + k] = static_cast<int32_t>(fl);
                f -= fl;
                if (f >= 1.0) { f -= 1.0; offset[3 * i + k] += 1; }
            }
            frac[3 * i + k] = f;
        }
        for (int d = 0; d < 3; ++d)
            wrapped[3 * i + d] = frac[3 * i] * a[0][d] + frac[3 * i + 1] * a[1][d] + frac[3 * i + 2] * a[2][d];
    }

    // reach along each periodic direction, in fractional units
    std::array<double, 3> reach{0, 0, 0};
    std::array<int, 3> nmax{0, 0, 0};
    for (int k = 0; k < 3; ++k) {
        if (!pbc[k]) continue;
        double spacing = 1.0 / norm(b[k]);  // distance between lattice planes
        reach[k] = rc / spacing;
        nmax[k] = static_cast<int>(std::floor(reach[k])) + 1;
    }

    // images: (atom, shift) of wrapped atoms that can lie within rc of the home cell
    std::vector<int64_t> img_atom;
    std::vector<int32_t> img_shift;
    std::vector<double> img_pos;
    for (int64_t j = 0; j < n; ++j) {
        for (int s0 = -nmax[0]; s0 <= nmax[0]; ++s0) {
            double g0 = frac[3 * j] + s0;
            if (pbc[0] && (g0 <= -reach[0] || g0 >= 1.0 + reach[0])) continue;
            for (int s1 = -nmax[1]; s1 <= nmax[1]; ++s1) {
                double g1 = frac[3 * j + 1] + s1;
                if (pbc[1] && (g1 <= -reach[1] || g1 >= 1.0 + reach[1])) continue;
                for (int s2 = -nmax[2]; s2 <= nmax[2]; ++s2) {
                    double g2 = frac[3 * j + 2] + s2;
                    if (pbc[2] && (g2 <= -reach[2] || g2 >= 1.0 + reach[2])) continue;
                    img_atom.push_back(j);
                    img_shift.insert(img_shift.end(), {s0, s1, s2});
                    for (int d = 0; d < 3; ++d) img_pos.push_back(g0 * a[0][d] + g1 * a[1][d] + g2 * a[2][d]);
                }
            }
        }
    }
    const int64_t m = static_cast<int64_t>(img_atom.size());

    // Cartesian bins of edge >= rc over the bounding box of the images
    Vec3 lo{1e300, 1e300, 1e300}, hi{-1e300, -1e300, -1e300};
    for (int64_t p = 0; p < m; ++p)
        for (int d = 0; d < 3; ++d) {
            lo[d] = std::min(lo[d], img_pos[3 * p + d]);
            hi[d] = std::max(hi[d], img_pos[3 * p + d]);
        }
    // Per axis, the occupied bin columns are numbered with every run of empty columns squeezed to one:
    // adjacency of occupied columns is kept, so a far outlier (a molecule beside a distant atom) costs one
    // extra column instead of forcing coarse bins on the dense part. Small ranges use a lookup table,
    // large ones a sorted list of occupied columns.
    double edge = rc;
    std::array<int64_t, 3> nb{1, 1, 1};
    std::array<std::vector<int64_t>, 3> occupied, squeezed;
    std::array<bool, 3> table{};
    auto column = [&](double x, int d) {
        const double c = (x - lo[d]) / edge;  // >= 0 for every image
        return c < 4e18 ? static_cast<int64_t>(c) : static_cast<int64_t>(4e18);
    };
    for (;;) {
        int64_t total = 1;
        for (int d = 0; d < 3; ++d) {
            const int64_t range = m ? column(hi[d], d) + 1 : 1;
            table[d] = range <= 4 * m + 64;
            std::vector<int64_t> &occ = occupied[d], &sq = squeezed[d];
            if (table[d]) {
                occ.assign(range, 0);
                for (int64_t p = 0; p < m; ++p) occ[column(img_pos[3 * p + d], d)] = 1;
                sq.assign(range, 0);
                int64_t c = 0, last = -2;
                for (int64_t t = 0; t < range; ++t)
                    if (occ[t]) {
                        if (last >= 0) c += (t - last > 1) ? 2 : 1;
                        sq[t] = c;
                        last = t;
                    }
                nb[d] = c + 1;
            } else {
                occ.resize(m);
                for (int64_t p = 0; p < m; ++p) occ[p] = column(img_pos[3 * p + d], d);
                std::sort(occ.begin(), occ.end());
                occ.erase(std::unique(occ.begin(), occ.end()), occ.end());
                sq.assign(occ.size(), 0);
                for (size_t t = 1; t < occ.size(); ++t) sq[t] = sq[t - 1] + ((occ[t] - occ[t - 1] > 1) ? 2 : 1);
                nb[d] = sq.empty() ? 1 : sq.back() + 1;
            }
            total = total > 8 * m + 64 ? total : total * nb[d];
        }
        if (total <= 8 * m + 64) break;  // sparse point clouds: coarser bins keep memory O(N)
        edge *= 2.0;
    }
    auto bin_of = [&](const double *r, int d) -> int64_t {
        const int64_t c = column(r[d], d);
        if (table[d]) return squeezed[d][std::min<int64_t>(c, static_cast<int64_t>(squeezed[d].size()) - 1)];
        const auto it = std::lower_bound(occupied[d].begin(), occupied[d].end(), c);
        return squeezed[d][std::min<size_t>(it - occupied[d].begin(), squeezed[d].size() - 1)];
    };
    const int64_t nbins = nb[0] * nb[1] * nb[2];
    std::vector<int64_t> head(nbins + 1, 0), order(m);
    std::vector<int64_t> binid(m);
    for (int64_t p = 0; p < m; ++p) {
        const double *r = &img_pos[3 * p];
        binid[p] = (bin_of(r, 0) * nb[1] + bin_of(r, 1)) * nb[2] + bin_of(r, 2);
        head[binid[p] + 1]++;
    }
    for (int64_t c = 0; c < nbins; ++c) head[c + 1] += head[c];
    {
        std::vector<int64_t> fill(head.begin(), head.end() - 1);
        for (int64_t p = 0; p < m; ++p) order[fill[binid[p]]++] = p;
    }
    // images copied into bin order: each bin's candidates are contiguous in memory
    std::vector<double> spos(3 * m);
    std::vector<int32_t> sdelta(3 * m);  // R = S - offset_j (offset_i added per home atom)
    std::vector<int32_t> satom(m);
    for (int64_t q = 0; q < m; ++q) {
        const int64_t p = order[q], j = img_atom[p];
        satom[q] = static_cast<int32_t>(j);
        for (int d = 0; d < 3; ++d) {
            spos[3 * q + d] = img_pos[3 * p + d];
            sdelta[3 * q + d] = img_shift[3 * p + d] - offset[3 * j + d];
        }
    }

    const double rc2 = rc * rc;
    const double rc2_sure = rc_exact > slack ? (rc_exact - slack) * (rc_exact - slack) : 0.0;
    const double rc2_exact = rc_exact * rc_exact;
    std::array<Vec3, 3> shift_vec{};  // only periodic rows: R is zero along the others
    for (int k = 0; k < 3; ++k)
        if (pbc[k]) shift_vec[k] = a[k];
    // the definition's distance, evaluated as (r_j - r_i) + (R_0 a_0 + R_1 a_1 + R_2 a_2)
    auto exact_inside = [&](int64_t i, int64_t j, int32_t R0, int32_t R1, int32_t R2) {
        double d2 = 0.0;
        for (int d = 0; d < 3; ++d) {
            const double t = (pos[3 * j + d] - pos[3 * i + d]) +
                             (R0 * shift_vec[0][d] + R1 * shift_vec[1][d] + R2 * shift_vec[2][d]);
            d2 += t * t;
        }
        return d2 < rc2_exact;
    };
    struct Hit { int32_t j, s0, s1, s2; };
    // home atoms visited in bin order (neighbouring atoms share candidate bins in cache); each atom's
    // sorted hits form one segment, copied out in atom order at the end
    std::vector<int64_t> home(n), home_bin(n);
    for (int64_t i = 0; i < n; ++i) {
        const double *ri = &wrapped[3 * i];
        home_bin[i] = (bin_of(ri, 0) * nb[1] + bin_of(ri, 1)) * nb[2] + bin_of(ri, 2);
    }
    std::iota(home.begin(), home.end(), 0);
    std::stable_sort(home.begin(), home.end(), [&](int64_t u, int64_t v) { return home_bin[u] < home_bin[v]; });
    std::vector<Hit> all;
    all.reserve(static_cast<size_t>(n) * 16);
    std::vector<int64_t> seg(n + 1, 0), seg_start(n);
    for (const int64_t i : home) {
        const double *ri = &wrapped[3 * i];
        const int64_t c0 = bin_of(ri, 0), c1 = bin_of(ri, 1), c2 = bin_of(ri, 2);
        const size_t start = all.size();
        for (int64_t x = std::max<int64_t>(0, c0 - 1); x <= std::min<int64_t>(nb[0] - 1, c0 + 1); ++x)
            for (int64_t y = std::max<int64_t>(0, c1 - 1); y <= std::min<int64_t>(nb[1] - 1, c1 + 1); ++y)
                for (int64_t z = std::max<int64_t>(0, c2 - 1); z <= std::min<int64_t>(nb[2] - 1, c2 + 1); ++z) {
                    const int64_t c = (x * nb[1] + y) * nb[2] + z;
                    for (int64_t q = head[c]; q < head[c + 1]; ++q) {
                        const double dx = spos[3 * q] - ri[0], dy = spos[3 * q + 1] - ri[1],
                                     dz = spos[3 * q + 2] - ri[2];
                        const double d2 = dx * dx + dy * dy + dz * dz;
                        if (d2 < rc2) {
                            // r_j + R.a - r_i = image - wrapped_i  with  R = S - offset_j + offset_i
                            const Hit h{satom[q], sdelta[3 * q] + offset[3 * i], sdelta[3 * q + 1] + offset[3 * i + 1],
                                        sdelta[3 * q + 2] + offset[3 * i + 2]};
                            if (d2 < rc2_sure || exact_inside(i, h.j, h.s0, h.s1, h.s2)) all.push_back(h);
                        }
                    }
                }
        std::sort(all.begin() + start, all.end(), [](const Hit &u, const Hit &v) {
            return std::tie(u.j, u.s0, u.s1, u.s2) < std::tie(v.j, v.s0, v.s1, v.s2);
        });
        seg_start[i] = static_cast<int64_t>(start);
        seg[i + 1] = static_cast<int64_t>(all.size() - start);
    }
    for (int64_t i = 0; i < n; ++i) seg[i + 1] += seg[i];
    Pairs out;
    out.src.resize(all.size());
    out.dst.resize(all.size());
    out.shift.resize(3 * all.size());
    for (int64_t i = 0; i < n; ++i) {
        int64_t w = seg[i];
        for (int64_t h = seg_start[i]; h < seg_start[i] + (seg[i + 1] - seg[i]); ++h, ++w) {
            out.src[w] = static_cast<int32_t>(i);
            out.dst[w] = all[h].j;
            out.shift[3 * w] = all[h].s0;
            out.shift[3 * w + 1] = all[h].s1;
            out.shift[3 * w + 2] = all[h].s2;
        }
    }
    return out;
}

// All (i, j, R) with |r_j + R.a - r_i| < rc, the distance evaluated on the positions as given, as
// (r_j - r_i) + (R_0 a_0 + R_1 a_1 + R_2 a_2): so a pair exactly at rc is never returned even when the
// atoms lie far outside the home cell. The cell list searches a slightly larger radius (the wrap into the
// home cell moves positions by rounding, ~1e-16 of their magnitude) and re-measures candidates near rc.
Pairs build(const double *pos, int64_t n, const double *cell_ptr, const std::array<bool, 3> &pbc, double rc) {
    if (!(rc > 0.0) || !std::isfinite(rc)) throw std::invalid_argument("cutoff must be a positive finite number");
    std::array<Vec3, 3> a{}, basis;
    for (int k = 0; k < 3; ++k)
        for (int d = 0; d < 3; ++d) basis[k][d] = a[k][d] = pbc[k] ? cell_ptr[3 * k + d] : 0.0;
    basis = complete_basis(basis, pbc);
    // Rounding bound of the wrap: fractional coordinates carry ~eps |a_k||b_k| |r| (the skew of the cell
    // amplifies it), images ~eps (reach + 1) |a_k| <= eps skew (rc + |a_k|). A search radius larger by
    // 1e-12 (≈ 5000 ulps) of that scale loses no pair; when that exceeds 1 % of the cutoff the coordinates
    // cannot resolve the cutoff at all.
    const double vol = dot(basis[0], cross(basis[1], basis[2]));
    double skew = 1.0, extent = rc, span = 0.0;
    for (int k = 0; k < 3; ++k) {
        const Vec3 bk = cross(basis[(k + 1) % 3], basis[(k + 2) % 3]);
        skew = std::max(skew, norm(basis[k]) * norm(bk) / std::abs(vol));
        span += norm(a[k]);
    }
    for (int64_t t = 0; t < 3 * n; ++t) extent = std::max(extent, std::abs(pos[t]));
    const double slack = 1e-12 * skew * (extent + rc + span);
    if (!(slack < 0.01 * rc))
        throw std::invalid_argument("coordinates up to " + std::to_string(extent) +
                                    " are too large for cutoff " + std::to_string(rc) +
                                    " (double precision cannot resolve it): wrap or centre the positions");
    return build_candidates(pos, n, cell_ptr, pbc, rc + slack, rc, slack);
}

py::tuple neighbor_list(py::array_t<double, py::array::c_style | py::array::forcecast> positions,
                        py::array_t<double, py::array::c_style | py::array::forcecast> cell,
                        std::array<bool, 3> pbc, double cutoff) {
    if (positions.ndim() != 2 || positions.shape(1) != 3)
        throw std::invalid_argument("positions must have shape (N, 3), got ndim " + std::to_string(positions.ndim()));
    if (cell.ndim() != 2 || cell.shape(0) != 3 || cell.shape(1) != 3)
        throw std::invalid_argument("cell must have shape (3, 3)");
    const int64_t n = positions.shape(0);
    Pairs p;
    {
        py::gil_scoped_release release;
        p = build(positions.data(), n, cell.data(), pbc, cutoff);
    }
    const auto e = static_cast<py::ssize_t>(p.src.size());
    py::array_t<int32_t> src(e), dst(e), shift({e, static_cast<py::ssize_t>(3)});
    std::copy(p.src.begin(), p.src.end(), src.mutable_data());
    std::copy(p.dst.begin(), p.dst.end(), dst.mutable_data());
    std::copy(p.shift.begin(), p.shift.end(), shift.mutable_data());
    return py::make_tuple(src, dst, shift);
}

}  // namespace

void bind_neighbors(py::module_ &m) {
    m.def("neighbor_list", &neighbor_list, py::arg("positions"), py::arg("cell"), py::arg("pbc"),
          py::arg("cutoff"),
          R"doc(All pairs (i, j, R) with |r_j + R . cell - r_i| < cutoff, the self pair (i, i, 0) included.

Parameters
----------
positions : (N, 3) float64, Cartesian, any length unit
cell : (3, 3) float64, rows are the lattice vectors (ignored along non-periodic directions)
pbc : three bools, periodicity along each lattice vector
cutoff : float, same unit as positions

Returns
-------
src, dst : (E,) int32 atom indices;  shift : (E, 3) int32 lattice vector R.
Sorted by (src, dst, R); O(N) with a cell list.)doc");
}

}  // namespace hambench
