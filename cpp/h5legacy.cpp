// Index of an HDF5 file whose root group is a "legacy" symbol-table group (superblock version 0 or 1, what
// h5py writes with libver='earliest' and what DeepH's legacy hamiltonians.h5 / overlaps.h5 are).
//
// The whole file is one buffer (the caller read it once). Walked, with every read bounds-checked:
//   superblock v0/v1  -> root symbol-table entry (scratch pad: B-tree v1 address, local heap address), or the
//                        root object header's symbol-table message (0x0011)
//   local heap "HEAP" -> data segment holding the NUL-terminated link names
//   B-tree v1 "TREE"  -> group nodes (type 0); level > 0 children are TREE nodes, level 0 children are
//   symbol nodes "SNOD" -> symbol-table entries (name offset in the heap, object header address)
//   object header v1  -> dataspace (0x0001 v1/v2), datatype (0x0003: little-endian IEEE float32/float64,
//                        little-endian fixed-point 1/2/4/8 bytes), layout (0x0008 v1-v4, contiguous or compact),
//                        continuation blocks (0x0010) followed; a filter pipeline (0x000B), external storage
//                        (0x0007), chunked/virtual layout, shared message, other types or header versions mark
//                        that dataset "unsupported" (the caller reads it with h5py instead).
// Only sizes of offsets/lengths of 8 bytes are accepted (what every HDF5 library writes by default).
// The parse runs without the GIL; Python objects are made afterwards.
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.hpp"

namespace py = pybind11;

namespace hambench {
namespace {

// A file that is not what the reader understands as a whole (new-style groups, superblock v2/v3): the caller
// falls back to h5py for the whole file.
struct H5Unsupported : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A file that is truncated or inconsistent: the caller reports it.
struct H5Corrupt : std::runtime_error {
    using std::runtime_error::runtime_error;
};

constexpr uint64_t kUndef = ~uint64_t(0);
const unsigned char kSig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

struct Entry {
    std::string name;
    int kind = 0;  // 0 dataset (supported), 1 group, 2 dataset or object the caller must read with h5py
    std::string why;
    std::vector<uint64_t> shape;
    char dtype_kind = 0;  // 'f', 'i', 'u'
    int itemsize = 0;
    uint64_t offset = 0, nbytes = 0;
};

class Reader {
  public:
    Reader(const unsigned char *p, uint64_t n) : p_(p), n_(n) {}

    std::vector<Entry> run() {
        uint64_t sb = find_superblock();
        int ver = u8(sb + 8);
        if (ver > 1) throw H5Unsupported("superblock version " + std::to_string(ver) + " (not a legacy file)");
        int so = u8(sb + 13), sl = u8(sb + 14);
        if (so != 8 || sl != 8)
            throw H5Unsupported("sizes of offsets/lengths " + std::to_string(so) + "/" + std::to_string(sl));
        uint64_t pos = sb + (ver == 0 ? 24 : 28);
        base_ = u64(pos);
        if (base_ != 0 && base_ != sb) throw H5Unsupported("base address not at the superblock");
        base_ = sb;
        uint64_t eof = u64(pos + 16);
        if (eof != kUndef && base_ + eof > n_)
            throw H5Corrupt("file is " + std::to_string(n_) + " bytes, the superblock says " +
                            std::to_string(base_ + eof) + " (truncated)");
        uint64_t root = pos + 32;  // root group symbol-table entry
        // The root entry's scratch pad may be stale (a library that later turned the root group into a
        // new-style one leaves it), so the root object header's own symbol-table message is what counts.
        uint64_t root_hdr = u64(root + 8);
        uint64_t btree = kUndef, heap = kUndef;
        find_symtab_message(root_hdr, btree, heap);
        std::vector<Entry> out;
        Heap h = read_heap(heap);
        walk_btree(btree, h, out, 256);
        return out;
    }

  private:
    const unsigned char *p_;
    uint64_t n_;
    uint64_t base_ = 0;
    mutable uint64_t nodes_ = 0;

    struct Heap {
        uint64_t data, size;
    };

    [[noreturn]] void trunc(uint64_t at, uint64_t len, const char *what) const {
        throw H5Corrupt(std::string(what) + " at byte " + std::to_string(at) + " (+" + std::to_string(len) +
                        ") is past the end of the " + std::to_string(n_) + "-byte file (truncated or corrupt)");
    }
    void need(uint64_t at, uint64_t len, const char *what) const {
        if (at > n_ || len > n_ - at) trunc(at, len, what);
    }
    int u8(uint64_t at) const {
        need(at, 1, "field");
        return p_[at];
    }
    uint16_t u16(uint64_t at) const {
        need(at, 2, "field");
        return uint16_t(p_[at] | (p_[at + 1] << 8));
    }
    uint32_t u32(uint64_t at) const {
        need(at, 4, "field");
        uint32_t v = 0;
        for (int k = 3; k >= 0; --k) v = (v << 8) | p_[at + k];
        return v;
    }
    uint64_t u64(uint64_t at) const {
        need(at, 8, "field");
        uint64_t v = 0;
        for (int k = 7; k >= 0; --k) v = (v << 8) | p_[at + k];
        return v;
    }
    uint64_t addr(uint64_t rel, const char *what) const {
        if (rel == kUndef) throw H5Corrupt(std::string(what) + " address is undefined");
        uint64_t a = base_ + rel;
        need(a, 1, what);
        return a;
    }
    void sig(uint64_t at, const char *s, const char *what) const {
        need(at, 4, what);
        if (std::memcmp(p_ + at, s, 4) != 0)
            throw H5Corrupt(std::string(what) + " at byte " + std::to_string(at) + " lacks its '" + s +
                            "' signature");
    }

    uint64_t find_superblock() const {
        for (uint64_t at = 0; at + 8 <= n_; at = at ? at * 2 : 512) {
            if (std::memcmp(p_ + at, kSig, 8) == 0) return at;
        }
        throw H5Corrupt("no HDF5 signature (not an HDF5 file, or truncated)");
    }

    Heap read_heap(uint64_t rel) const {
        uint64_t a = addr(rel, "local heap");
        sig(a, "HEAP", "local heap");
        uint64_t size = u64(a + 8), data = addr(u64(a + 24), "local heap data");
        need(data, size, "local heap data");
        return {data, size};
    }

    std::string heap_name(const Heap &h, uint64_t off) const {
        if (off >= h.size) throw H5Corrupt("link name offset " + std::to_string(off) + " outside the local heap");
        const char *s = reinterpret_cast<const char *>(p_ + h.data + off);
        size_t len = strnlen(s, h.size - off);
        if (len == h.size - off) throw H5Corrupt("unterminated link name in the local heap");
        return std::string(s, len);
    }

    // Levels strictly decrease towards the leaves (so no cycles), and no more nodes are visited than could fit
    // in the file (so a corrupt tree sharing nodes cannot blow up).
    void walk_btree(uint64_t rel, const Heap &h, std::vector<Entry> &out, int parent_level) const {
        if (++nodes_ > n_ / 24 + 1) throw H5Corrupt("group B-tree visits more nodes than the file holds");
        uint64_t a = addr(rel, "group B-tree node");
        sig(a, "TREE", "group B-tree node");
        if (u8(a + 4) != 0) throw H5Corrupt("root B-tree is not a group node");
        int level = u8(a + 5);
        if (level >= parent_level) throw H5Corrupt("group B-tree levels do not decrease (a cycle?)");
        int used = u16(a + 6);
        uint64_t pos = a + 24;  // after left/right sibling addresses
        need(pos, uint64_t(used) * 16 + 8, "group B-tree node");
        for (int k = 0; k < used; ++k) {
            uint64_t child = u64(pos + 8 + 16 * uint64_t(k));
            if (level > 0)
                walk_btree(child, h, out, level);
            else
                read_snod(child, h, out);
        }
    }

    void read_snod(uint64_t rel, const Heap &h, std::vector<Entry> &out) const {
        uint64_t a = addr(rel, "symbol node");
        sig(a, "SNOD", "symbol node");
        int nsym = u16(a + 6);
        need(a + 8, uint64_t(nsym) * 40, "symbol node entries");
        if (out.size() + nsym > n_ / 40 + 1) throw H5Corrupt("more symbols than the file holds");
        for (int k = 0; k < nsym; ++k) {
            uint64_t e = a + 8 + 40 * uint64_t(k);
            Entry en;
            en.name = heap_name(h, u64(e));
            parse_object(u64(e + 8), u32(e + 16), en);
            out.push_back(std::move(en));
        }
    }

    struct Msg {
        int type, flags;
        uint64_t body, size;
    };

    // Messages of a v1 object header, continuation blocks followed.
    std::vector<Msg> messages(uint64_t rel, bool &ok, std::string &why) const {
        std::vector<Msg> msgs;
        uint64_t a = addr(rel, "object header");
        if (u8(a) != 1) {
            ok = false;
            why = "object header version " + std::to_string(u8(a));
            return msgs;
        }
        uint32_t nmsg = u16(a + 2);
        uint64_t hsize = u32(a + 8);
        std::vector<std::pair<uint64_t, uint64_t>> blocks{{a + 16, hsize}};
        for (size_t b = 0; b < blocks.size(); ++b) {
            if (b > 1000) throw H5Corrupt("object header with more than 1000 continuation blocks");
            uint64_t pos = blocks[b].first, end = pos + blocks[b].second;
            need(blocks[b].first, blocks[b].second, "object header block");
            while (pos + 8 <= end && msgs.size() < nmsg) {
                Msg m{u16(pos), u8(pos + 4), pos + 8, u16(pos + 2)};
                if (m.body + m.size > end) throw H5Corrupt("object header message runs past its block");
                if (m.type == 0x0010) {
                    uint64_t ca = addr(u64(m.body), "header continuation");
                    blocks.push_back({ca, u64(m.body + 8)});
                }
                msgs.push_back(m);
                pos = m.body + m.size;
            }
        }
        ok = true;
        return msgs;
    }

    void find_symtab_message(uint64_t rel, uint64_t &btree, uint64_t &heap) const {
        bool ok;
        std::string why;
        auto msgs = messages(rel, ok, why);
        if (!ok) throw H5Unsupported("root group: " + why);
        for (const Msg &m : msgs)
            if (m.type == 0x0011) {
                btree = u64(m.body);
                heap = u64(m.body + 8);
                return;
            }
        throw H5Unsupported("root group is not a symbol-table group (new-style links)");
    }

    void parse_object(uint64_t rel, uint32_t cache, Entry &en) const {
        if (cache == 1) {
            en.kind = 1;
            return;
        }
        bool ok;
        auto msgs = messages(rel, ok, en.why);
        if (!ok) {
            en.kind = 2;
            return;
        }
        bool has_space = false, has_type = false, has_layout = false;
        uint64_t count = 1;
        for (const Msg &m : msgs) {
            switch (m.type) {
                case 0x0011:
                case 0x0002:
                case 0x0006:
                    en.kind = 1;  // symbol table / link info / link: a group
                    return;
                case 0x0007:
                    return unsupported(en, "external storage");
                case 0x000B:
                    return unsupported(en, "filter pipeline (compressed or filtered)");
                case 0x0001:
                case 0x0003:
                case 0x0008:
                    if (m.flags & 0x02) return unsupported(en, "shared message");
                    break;
                default:
                    break;
            }
            if (m.type == 0x0001) {
                int ver = u8(m.body), nd = u8(m.body + 1), fl = u8(m.body + 2);
                uint64_t d = m.body + (ver == 1 ? 8 : 4);
                if (ver == 2) {
                    int t = u8(m.body + 3);
                    if (t == 2) return unsupported(en, "null dataspace");
                } else if (ver != 1) {
                    return unsupported(en, "dataspace version " + std::to_string(ver));
                }
                (void)fl;
                en.shape.clear();
                count = 1;
                for (int k = 0; k < nd; ++k) {
                    uint64_t v = u64(d + 8 * uint64_t(k));
                    en.shape.push_back(v);
                    if (v && count > (uint64_t(1) << 62) / v) throw H5Corrupt("dataspace too large");
                    count *= v;
                }
                has_space = true;
            } else if (m.type == 0x0003) {
                int cls = u8(m.body) & 0x0F;
                int b0 = u8(m.body + 1);
                uint32_t size = u32(m.body + 4);
                uint64_t pr = m.body + 8;
                if (cls == 1) {
                    if (b0 & 0x41) return unsupported(en, "big-endian or VAX float");
                    bool ieee32 = size == 4 && u16(pr) == 0 && u16(pr + 2) == 32 && u8(pr + 4) == 23 &&
                                  u8(pr + 5) == 8 && u8(pr + 6) == 0 && u8(pr + 7) == 23 && u32(pr + 8) == 127;
                    bool ieee64 = size == 8 && u16(pr) == 0 && u16(pr + 2) == 64 && u8(pr + 4) == 52 &&
                                  u8(pr + 5) == 11 && u8(pr + 6) == 0 && u8(pr + 7) == 52 && u32(pr + 8) == 1023;
                    if (!ieee32 && !ieee64) return unsupported(en, "non-IEEE float");
                    en.dtype_kind = 'f';
                } else if (cls == 0) {
                    if (b0 & 0x01) return unsupported(en, "big-endian integer");
                    if (!(size == 1 || size == 2 || size == 4 || size == 8) || u16(pr) != 0 ||
                        u16(pr + 2) != size * 8)
                        return unsupported(en, "integer with padding bits");
                    en.dtype_kind = (b0 & 0x08) ? 'i' : 'u';
                } else {
                    return unsupported(en, "datatype class " + std::to_string(cls));
                }
                en.itemsize = int(size);
                has_type = true;
            } else if (m.type == 0x0008) {
                int ver = u8(m.body);
                if (ver == 1 || ver == 2) {
                    int nd = u8(m.body + 1), lc = u8(m.body + 2);
                    uint64_t q = m.body + 8;
                    if (lc == 1) {
                        en.offset = u64(q);
                        en.nbytes = kUndef;  // computed from the dataspace
                    } else if (lc == 0) {
                        uint64_t sz = u32(q + 4 * uint64_t(nd));
                        en.offset = q + 4 * uint64_t(nd) + 4;
                        en.nbytes = sz;
                        need(en.offset, sz, "compact data");
                        en.offset -= base_;
                    } else {
                        return unsupported(en, "chunked layout");
                    }
                } else if (ver == 3 || ver == 4) {
                    int lc = u8(m.body + 1);
                    if (lc == 1) {
                        en.offset = u64(m.body + 2);
                        en.nbytes = u64(m.body + 10);
                    } else if (lc == 0) {
                        en.nbytes = u16(m.body + 2);
                        en.offset = m.body + 4;
                        need(en.offset, en.nbytes, "compact data");
                        en.offset -= base_;
                    } else {
                        return unsupported(en, lc == 2 ? "chunked layout" : "layout class " + std::to_string(lc));
                    }
                } else {
                    return unsupported(en, "layout version " + std::to_string(ver));
                }
                has_layout = true;
            }
        }
        if (!has_space || !has_type || !has_layout) return unsupported(en, "no dataspace/datatype/layout");
        uint64_t want = count * uint64_t(en.itemsize);
        if (en.offset == kUndef) {
            if (want == 0) {
                en.offset = 0;
                en.nbytes = 0;
                return;
            }
            return unsupported(en, "storage never allocated (fill value)");
        }
        if (en.nbytes == kUndef) en.nbytes = want;
        if (en.nbytes != want)
            throw H5Corrupt("dataset '" + en.name + "' stores " + std::to_string(en.nbytes) + " bytes for " +
                            std::to_string(want) + " expected");
        uint64_t start = base_ + en.offset;
        if (start > n_ || want > n_ - start) trunc(start, want, ("data of dataset '" + en.name + "'").c_str());
        en.offset = start;
        en.kind = 0;
    }

    static void unsupported(Entry &en, const std::string &why) {
        en.kind = 2;
        en.why = why;
    }
};

py::list h5legacy_index(py::buffer buf) {
    py::buffer_info info = buf.request();
    if (info.itemsize != 1 || info.ndim != 1) throw py::value_error("expected a 1-D byte buffer");
    const auto *p = static_cast<const unsigned char *>(info.ptr);
    uint64_t n = uint64_t(info.size);
    std::vector<Entry> entries;
    std::string err;
    int err_kind = 0;
    {
        py::gil_scoped_release nogil;
        try {
            entries = Reader(p, n).run();
        } catch (const H5Unsupported &e) {
            err_kind = 1;
            err = e.what();
        } catch (const H5Corrupt &e) {
            err_kind = 2;
            err = e.what();
        }
    }
    if (err_kind == 1) {
        py::object exc = py::module_::import("hambench._core").attr("H5LegacyUnsupported");
        PyErr_SetString(exc.ptr(), err.c_str());
        throw py::error_already_set();
    }
    if (err_kind == 2) throw py::value_error(err);
    py::list out;
    for (const Entry &e : entries) {
        static const char *kinds[] = {"dataset", "group", "unsupported"};
        py::tuple shape(e.shape.size());
        for (size_t k = 0; k < e.shape.size(); ++k) shape[k] = py::int_(e.shape[k]);
        std::string dt;
        if (e.kind == 0) dt = std::string("<") + e.dtype_kind + std::to_string(e.itemsize);
        out.append(py::make_tuple(e.name, kinds[e.kind], shape, dt, e.offset, e.nbytes, e.why));
    }
    return out;
}

}  // namespace

void bind_h5legacy(py::module_ &m) {
    py::object base = py::module_::import("builtins").attr("NotImplementedError");
    m.attr("H5LegacyUnsupported") =
        py::reinterpret_steal<py::object>(PyErr_NewException("hambench._core.H5LegacyUnsupported", base.ptr(), nullptr));
    m.def("h5legacy_index", &h5legacy_index, py::arg("buffer"),
          R"doc(Index the root group of a legacy HDF5 file (superblock v0/v1, symbol-table group) held in one buffer.

Returns a list, in the group's (name) order, of tuples
``(name, kind, shape, dtype, offset, nbytes, why)``: kind 'dataset' (shape tuple, numpy dtype string such as
'<f8', byte offset and length of the data inside the buffer; contiguous or compact storage), 'group', or
'unsupported' (``why`` says what: chunked, filtered, other type...; read it with h5py).
The parse runs without the GIL.

Raises H5LegacyUnsupported (a NotImplementedError) for a file that is not a legacy symbol-table file (read it
with h5py), ValueError for a truncated or corrupt file (naming what and the byte offset).)doc");
}

}  // namespace hambench
