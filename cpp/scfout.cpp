// Reader of OpenMX 3.9 `.scfout` files (file-format version 3).
//
// Layout (little-endian int32 / float64, no record markers; verified byte-exactly on real files,
// shared/research/openmx_build.md §6):
//   7 int      atomnum, SpinP_switch + 4 * version, Catomnum, Latomnum, Ratomnum, TCpyCell, order_max
//   atv        (TCpyCell+1) x 4 double  [unused, x, y, z] cell translations, Bohr
//   atv_ijk    (TCpyCell+1) x 4 int     [unused, i, j, k] lattice translations
//   Total_NumOrbs, FNAN   atomnum int each
//   natn       per atom FNAN+1 int (1-based neighbour atom);  ncn  per atom FNAN+1 int (index into atv)
//   tv, rtv    3 x 4 double each;  Gxyz  atomnum x 4 double (Bohr)
//   matrices   each = every pair block (n_i x n_j, row-major) in pair order (atom, then neighbour):
//              H[SpinP+1], iHNL[3] (SpinP == 3 only), OLP, OLPpo[3][order_max], OLPmo[3], DM[SpinP+1], iDM[2]
//   1 int      Solver;  10 double ChemP, E_Temp, dipole core (3), dipole background (3),
//                                 Total_Num_Electrons, Total_SpinS
//   1 int      number of input lines, then that many 256-byte NUL-terminated lines (the input file)
//   anything after that (DeepH's workflow appends the `.out` text) is returned as bytes.
// Because every matrix is one contiguous run of doubles, the matrices are read with one fread each
// group straight into one numpy allocation, with the GIL released.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.hpp"

namespace py = pybind11;

namespace hambench {
namespace {

constexpr int kScfoutVersion = 3;
constexpr int64_t kLineBytes = 256;

template <typename T>
void byteswap_inplace(T *p, int64_t n) {
    for (int64_t k = 0; k < n; ++k) {
        unsigned char *c = reinterpret_cast<unsigned char *>(p + k);
        std::reverse(c, c + sizeof(T));
    }
}

int32_t bswap32(int32_t v) {
    byteswap_inplace(&v, 1);
    return v;
}

struct FileCloser {
    void operator()(std::FILE *f) const {
        if (f) std::fclose(f);
    }
};

// Sequential reader with bounds checks: every short read names the record and the byte offset.
class Reader {
  public:
    Reader(std::FILE *f, std::string path, int64_t size) : f_(f), path_(std::move(path)), size_(size) {}

    int64_t pos() const { return pos_; }
    int64_t size() const { return size_; }
    int64_t remaining() const { return size_ - pos_; }
    bool swap = false;

    [[noreturn]] void truncated(const std::string &what, int64_t need) const {
        throw std::invalid_argument(path_ + ": truncated .scfout: record '" + what + "' needs " +
                                    std::to_string(need) + " bytes at byte offset " + std::to_string(pos_) +
                                    " but the file has " + std::to_string(size_) + " bytes");
    }

    void require(const std::string &what, int64_t bytes) const {
        if (bytes < 0 || bytes > remaining()) truncated(what, bytes);
    }

    // Reads `count` items of T into dst (byte-swapping when the file has the other endianness).
    template <typename T>
    void read(T *dst, int64_t count, const std::string &what) {
        const int64_t bytes = count * static_cast<int64_t>(sizeof(T));
        require(what, bytes);
        if (count > 0 && std::fread(dst, sizeof(T), static_cast<size_t>(count), f_) != static_cast<size_t>(count))
            throw std::runtime_error(path_ + ": read error in record '" + what + "' at byte offset " +
                                     std::to_string(pos_));
        pos_ += bytes;
        if (swap && sizeof(T) > 1) byteswap_inplace(dst, count);
    }

    template <typename T>
    std::vector<T> vec(int64_t count, const std::string &what) {
        require(what, count * static_cast<int64_t>(sizeof(T)));
        std::vector<T> v(static_cast<size_t>(count));
        read(v.data(), count, what);
        return v;
    }

    void skip(int64_t bytes, const std::string &what) {
        require(what, bytes);
        if (bytes > 0 && std::fseek(f_, static_cast<long>(bytes), SEEK_CUR) != 0)
            throw std::runtime_error(path_ + ": seek error in record '" + what + "'");
        pos_ += bytes;
    }

  private:
    std::FILE *f_;
    std::string path_;
    int64_t size_;
    int64_t pos_ = 0;
};

const char *spin_name(int s) {
    switch (s) {
        case 0: return "off";
        case 1: return "collinear";
        case 3: return "non-collinear";
        default: return "unknown";
    }
}

py::dict read_scfout(const std::string &path, const std::string &what) {
    if (what != "header" && what != "default" && what != "all")
        throw std::invalid_argument("what must be 'header', 'default' or 'all', got '" + what + "'");
    errno = 0;
    std::unique_ptr<std::FILE, FileCloser> fp(std::fopen(path.c_str(), "rb"));
    if (!fp) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, path.c_str());
        throw py::error_already_set();
    }
    std::FILE *f = fp.get();
    if (std::fseek(f, 0, SEEK_END) != 0) throw std::runtime_error(path + ": cannot seek (not a regular file?)");
    const int64_t size = static_cast<int64_t>(std::ftell(f));
    std::rewind(f);
    Reader rd(f, path, size);

    // --- header -------------------------------------------------------------------------------------
    int32_t h7[7];
    rd.read(h7, 6, "header");
    auto plausible = [](const int32_t *h) { return h[0] >= 1 && h[1] >= 0 && h[1] < 4 * (kScfoutVersion + 1); };
    if (!plausible(h7)) {
        int32_t s[6];
        for (int k = 0; k < 6; ++k) s[k] = bswap32(h7[k]);
        if (!plausible(s))
            throw std::invalid_argument(path + ": not an OpenMX .scfout file (header atomnum=" + std::to_string(h7[0]) +
                                        ", SpinP_switch field=" + std::to_string(h7[1]) + ")");
        std::copy(s, s + 6, h7);
        rd.swap = true;
    }
    const int32_t atomnum = h7[0];
    const int version = h7[1] / 4;
    const int spin = h7[1] % 4;
    if (version < kScfoutVersion)
        throw std::invalid_argument(path + ": pre-3.9 .scfout (version " + std::to_string(version) +
                                    ") is not supported; rerun with OpenMX 3.9 (file version 3)");
    if (version > kScfoutVersion)
        throw std::invalid_argument(path + ": .scfout version " + std::to_string(version) +
                                    " is newer than the supported version 3");
    if (spin == 2) throw std::invalid_argument(path + ": SpinP_switch = 2 is not a valid OpenMX spin mode");
    const int32_t Catomnum = h7[2], Latomnum = h7[3], Ratomnum = h7[4], TCpyCell = h7[5];
    if (TCpyCell < 0) throw std::invalid_argument(path + ": negative TCpyCell " + std::to_string(TCpyCell));
    rd.read(h7 + 6, 1, "order_max");
    const int32_t order_max = h7[6];
    if (order_max < 0) throw std::invalid_argument(path + ": negative order_max " + std::to_string(order_max));
    const int64_t ncell = static_cast<int64_t>(TCpyCell) + 1;

    auto atv4 = rd.vec<double>(ncell * 4, "atv");
    auto atv_ijk4 = rd.vec<int32_t>(ncell * 4, "atv_ijk");
    auto norb = rd.vec<int32_t>(atomnum, "Total_NumOrbs");
    auto fnan = rd.vec<int32_t>(atomnum, "FNAN");
    int64_t npairs = 0;
    std::vector<int64_t> atom_ptr(static_cast<size_t>(atomnum) + 1, 0);
    for (int32_t a = 0; a < atomnum; ++a) {
        if (norb[a] < 1) throw std::invalid_argument(path + ": atom " + std::to_string(a + 1) + " has Total_NumOrbs " +
                                                     std::to_string(norb[a]));
        if (fnan[a] < 0) throw std::invalid_argument(path + ": atom " + std::to_string(a + 1) + " has FNAN " +
                                                     std::to_string(fnan[a]));
        npairs += static_cast<int64_t>(fnan[a]) + 1;
        atom_ptr[a + 1] = npairs;
    }
    auto natn = rd.vec<int32_t>(npairs, "natn");
    auto ncn = rd.vec<int32_t>(npairs, "ncn");
    auto tv4 = rd.vec<double>(12, "tv");
    auto rtv4 = rd.vec<double>(12, "rtv");
    auto gxyz4 = rd.vec<double>(static_cast<int64_t>(atomnum) * 4, "Gxyz");

    // --- pairs --------------------------------------------------------------------------------------
    py::array_t<int32_t> pair_i(npairs), pair_j(npairs), pair_R({npairs, static_cast<int64_t>(3)});
    py::array_t<int64_t> block_ptr(npairs + 1);
    {
        auto pi = pair_i.mutable_data(), pj = pair_j.mutable_data(), pR = pair_R.mutable_data();
        auto bp = block_ptr.mutable_data();
        bp[0] = 0;
        for (int32_t a = 0; a < atomnum; ++a) {
            for (int64_t p = atom_ptr[a]; p < atom_ptr[a + 1]; ++p) {
                const int32_t j = natn[p], c = ncn[p];
                if (j < 1 || j > atomnum)
                    throw std::invalid_argument(path + ": neighbour " + std::to_string(p - atom_ptr[a]) + " of atom " +
                                                std::to_string(a + 1) + " is atom " + std::to_string(j) +
                                                ", outside 1.." + std::to_string(atomnum));
                if (c < 0 || c > TCpyCell)
                    throw std::invalid_argument(path + ": neighbour " + std::to_string(p - atom_ptr[a]) + " of atom " +
                                                std::to_string(a + 1) + " has cell index " + std::to_string(c) +
                                                ", outside 0.." + std::to_string(TCpyCell));
                pi[p] = a;
                pj[p] = j - 1;
                for (int d = 0; d < 3; ++d) pR[3 * p + d] = atv_ijk4[4 * static_cast<int64_t>(c) + 1 + d];
                bp[p + 1] = bp[p] + static_cast<int64_t>(norb[a]) * norb[j - 1];
                if (bp[p + 1] > rd.remaining() / 8) rd.truncated("matrices (H, ...)", 8 * bp[p + 1]);
            }
        }
    }
    const int64_t nelem = block_ptr.data()[npairs];

    // --- matrices -----------------------------------------------------------------------------------
    const int64_t nspin = spin + 1, nih = (spin == 3) ? 3 : 0;
    const int64_t n_default = nspin + nih + 1;                         // H, iHNL, OLP
    const int64_t n_extra = 3 * static_cast<int64_t>(order_max) + 3 + nspin + 2;  // OLPpo, OLPmo, DM, iDM
    const int64_t mat_bytes = nelem * 8;
    rd.require("matrices (H, iHNL, OLP, OLPpo, OLPmo, DM, iDM)", (n_default + n_extra) * mat_bytes);
    const int64_t nread = what == "header" ? 0 : (what == "all" ? n_default + n_extra : n_default);
    py::array_t<double> mats({nread, nelem});
    {
        double *buf = mats.mutable_data();
        py::gil_scoped_release release;
        if (nread > 0) rd.read(buf, nread * nelem, "matrices");
        rd.skip((n_default + n_extra - nread) * mat_bytes, "matrices");
    }

    // --- scalars and the input file -----------------------------------------------------------------
    int32_t solver;
    rd.read(&solver, 1, "Solver");
    double sc[10];
    rd.read(sc, 10, "ChemP, E_Temp, dipole moments, Total_Num_Electrons, Total_SpinS");
    int32_t nlines;
    rd.read(&nlines, 1, "number of input lines");
    if (nlines < 0) throw std::invalid_argument(path + ": negative number of input lines " + std::to_string(nlines));
    rd.require("input lines", static_cast<int64_t>(nlines) * kLineBytes);
    std::vector<char> raw(static_cast<size_t>(nlines) * kLineBytes);
    rd.read(raw.data(), static_cast<int64_t>(raw.size()), "input lines");
    py::list lines;
    for (int32_t k = 0; k < nlines; ++k) {
        const char *s = raw.data() + static_cast<size_t>(k) * kLineBytes;
        size_t n = strnlen(s, kLineBytes);
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) --n;
        PyObject *u = PyUnicode_DecodeUTF8(s, static_cast<py::ssize_t>(n), "replace");
        if (!u) throw py::error_already_set();
        lines.append(py::reinterpret_steal<py::str>(u));
    }
    std::string tail(static_cast<size_t>(rd.remaining()), '\0');
    rd.read(tail.data(), rd.remaining(), "appended text");

    // --- assemble the result ------------------------------------------------------------------------
    py::dict out;
    out["path"] = path;
    out["file_size"] = size;
    out["version"] = version;
    out["atomnum"] = atomnum;
    out["SpinP_switch"] = spin;
    out["spin"] = spin_name(spin);
    out["Catomnum"] = Catomnum;
    out["Latomnum"] = Latomnum;
    out["Ratomnum"] = Ratomnum;
    out["TCpyCell"] = TCpyCell;
    out["order_max"] = order_max;
    py::array_t<double> atv({ncell, static_cast<int64_t>(3)});
    py::array_t<int32_t> atv_ijk({ncell, static_cast<int64_t>(3)});
    for (int64_t c = 0; c < ncell; ++c)
        for (int d = 0; d < 3; ++d) {
            atv.mutable_data()[3 * c + d] = atv4[4 * c + 1 + d];
            atv_ijk.mutable_data()[3 * c + d] = atv_ijk4[4 * c + 1 + d];
        }
    out["atv"] = atv;
    out["atv_ijk"] = atv_ijk;
    out["Total_NumOrbs"] = py::array_t<int32_t>(atomnum, norb.data());
    out["FNAN"] = py::array_t<int32_t>(atomnum, fnan.data());
    out["natn"] = py::array_t<int32_t>(npairs, natn.data());
    out["ncn"] = py::array_t<int32_t>(npairs, ncn.data());
    out["atom_ptr"] = py::array_t<int64_t>(atomnum + 1, atom_ptr.data());
    auto drop_first = [](const std::vector<double> &v, int64_t rows) {
        py::array_t<double> a({rows, static_cast<int64_t>(3)});
        for (int64_t r = 0; r < rows; ++r)
            for (int d = 0; d < 3; ++d) a.mutable_data()[3 * r + d] = v[4 * r + 1 + d];
        return a;
    };
    out["tv"] = drop_first(tv4, 3);
    out["rtv"] = drop_first(rtv4, 3);
    out["Gxyz"] = drop_first(gxyz4, atomnum);
    out["pair_i"] = pair_i;
    out["pair_j"] = pair_j;
    out["pair_R"] = pair_R;
    out["block_ptr"] = block_ptr;
    out["npairs"] = npairs;
    out["nelem"] = nelem;
    out["Solver"] = solver;
    out["ChemP"] = sc[0];
    out["E_Temp"] = sc[1];
    out["dipole_moment_core"] = py::array_t<double>(3, sc + 2);
    out["dipole_moment_background"] = py::array_t<double>(3, sc + 5);
    out["Total_Num_Electrons"] = sc[8];
    out["Total_SpinS"] = sc[9];
    out["input_lines"] = lines;
    out["appended"] = py::bytes(tail);
    out["matrices"] = mats;
    if (nread > 0) {
        int64_t at = 0;
        auto take = [&](int64_t n) {
            py::object v = mats[py::slice(at, at + n, 1)];
            at += n;
            return v;
        };
        out["H"] = take(nspin);
        out["iHNL"] = nih ? take(nih) : py::object(py::none());
        out["OLP"] = take(1).attr("reshape")(nelem);
        if (nread == n_default + n_extra) {
            out["OLPpo"] = take(3 * static_cast<int64_t>(order_max)).attr("reshape")(3, order_max, nelem);
            out["OLPmo"] = take(3);
            out["DM"] = take(nspin);
            out["iDM"] = take(2);
        }
    }
    return out;
}

}  // namespace

void bind_scfout(py::module_ &m) {
    m.def("read_scfout", &read_scfout, py::arg("path"), py::arg("what") = "default",
          R"doc(Read an OpenMX 3.9 ``.scfout`` file (file-format version 3) in one pass.

Parameters
----------
path : str
what : 'default' (H, iHNL, OLP), 'all' (also OLPpo, OLPmo, DM, iDM) or 'header' (no matrices)

Returns
-------
dict, units as in the file (Hartree, Bohr):
  header: version, atomnum, SpinP_switch (0 off, 1 collinear, 3 non-collinear), Catomnum, Latomnum, Ratomnum,
  TCpyCell, order_max, Solver, ChemP, E_Temp, Total_Num_Electrons, Total_SpinS, dipole_moment_core,
  dipole_moment_background;
  atv (TCpyCell+1, 3) float64 and atv_ijk (TCpyCell+1, 3) int32 (cell translations, Cartesian and integer);
  Total_NumOrbs, FNAN (atomnum,); natn (1-based), ncn flat over pairs; atom_ptr (atomnum+1,) first pair of
  each atom; tv, rtv (3, 3) rows = vectors; Gxyz (atomnum, 3);
  pairs in file order: pair_i, pair_j (0-based), pair_R (npairs, 3) int32, block_ptr (npairs+1,) int64 —
  block p of any matrix is M[block_ptr[p]:block_ptr[p+1]].reshape(n_i, n_j);
  matrices (nread, nelem) float64, one allocation, with views H (SpinP+1, nelem), iHNL (3, nelem) or None,
  OLP (nelem,) and, for what='all', OLPpo (3, order_max, nelem), OLPmo (3, nelem), DM (SpinP+1, nelem),
  iDM (2, nelem);
  input_lines: list of str (the input file); appended: bytes after the input (e.g. a ``.out`` appended).

Raises ValueError for a pre-3.9 file, a truncated file (naming the record and byte offset) or an
inconsistent header; OSError when the file cannot be opened.)doc");
}

}  // namespace hambench
