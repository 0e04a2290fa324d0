#include "residency.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <stdexcept>
#include <thread>

#include "spill.h"
#include "spillway/precision.h"

namespace spw {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

Residency::Residency(Backend& be, Model& model, const TierOptions& o) : be_(be), model_(model) {
    resident_ = !be_.host_addressable();
    try {
        place(o);
        upload_resident();
    } catch (...) {
        release();
        throw;
    }
}

Residency::~Residency() { release(); }

void Residency::upload_resident() {
    // Device-homed units: every master is uploaded once; kernels and updates use the
    // device copies. Streamed units pass through the staging slots instead.
    // With bf16/fp16 masters a resident block is kept in that format on the device too (half the
    // memory); its groups are widened or perturbed into float32 as kernels need them, like a
    // staged block's. The embeddings and the head stay float32 (their kernels read them whole).
    for (size_t ti = 0; ti < model_.tensors.size(); ti++) {
        Tensor& t = model_.tensors[ti];
        if (!t.master) continue;
        if (tiers_[(size_t)tensor_unit_[ti]].home != Home::Device) continue;
        if (dtype_ != MASTER_F32 && model_.units[(size_t)tensor_unit_[ti]].kind == UnitKind::Block) {
            std::vector<uint16_t> h(t.numel);
            for (size_t i = 0; i < t.numel; i++) h[i] = narrow_one(t.master[i], dtype_);
            t.device16 = static_cast<uint16_t*>(be_.alloc(std::max<size_t>(t.numel, 1) * sizeof(uint16_t)));
            resident16_.push_back(t.device16);
            be_.upload(t.device16, h.data(), t.numel * sizeof(uint16_t));
            std::free(t.master);
            t.master = nullptr;
            continue;
        }
        if (!resident_) {
            t.device = t.master;
            continue;
        }
        t.device = static_cast<float*>(be_.alloc(std::max<size_t>(t.numel, 1) * sizeof(float)));
        be_.upload(t.device, t.master, t.numel * sizeof(float));
    }
}

// Everything place() and upload_resident() made on the backend: staging slots, events, host
// registrations and the device-homed masters.
void Residency::release() {
    be_.synchronize();
    for (float* s : stage_) be_.release(s);
    stage_.clear();
    for (uint16_t* r : raw_) be_.release(r);
    raw_.clear();
    for (auto* evs : {&slot_ready_, &slot_free_, &slot_wb_, &prefetch_done_})
        for (Backend::Event* e : *evs) be_.event_destroy(e);
    slot_ready_.clear();
    slot_free_.clear();
    slot_wb_.clear();
    prefetch_done_.clear();
    for (Backend::Event** e : {&io_done_, &wb_done_, &updated_}) {
        if (*e) be_.event_destroy(*e);
        *e = nullptr;
    }
    for (void* p : pinned_) be_.unpin_host(p);
    pinned_.clear();

    for (uint16_t* p : resident16_) be_.release(p);
    resident16_.clear();
    if (!resident_) return;
    // Only device homes own their device copy (a streamed tensor's may point into a slot still).
    for (size_t ti = 0; ti < model_.tensors.size() && ti < tensor_unit_.size(); ti++) {
        Tensor& t = model_.tensors[ti];
        if (tensor_unit_[ti] >= 0 && tiers_[(size_t)tensor_unit_[ti]].home == Home::Device && t.device &&
            t.device != t.master)
            be_.release(t.device);
        t.device = nullptr;
    }
}

// A CPU-homed unit updated on the device keeps its last update pending until its next
// visit; whoever reads its master first applies it here, on the host (same values).
void Residency::flush_cpu_pending(size_t ui) {
    UnitTier& tier = tiers_[ui];
    if (tier.home != Home::Cpu || tier.pending.empty()) return;
    be_.synchronize();  // write-backs still in flight land first
    for (const Pending& p : tier.pending)
        for (auto& [ti, off] : tier.layout) {
            Tensor& t = model_.tensors[(size_t)ti];
            update_at(*host_, t, tier.packed ? (void*)(static_cast<uint16_t*>(tier.packed->data()) + off) : t.master,
                      tier.packed != nullptr, p.terms, p.decay, p.noise);
        }
    host_->synchronize();
    tier.pending.clear();
}

void Residency::update_at(Backend& be, const Tensor& t, void* theta, bool packed, const std::vector<UpdateTerm>& terms,
                       float decay, int noise) {
    if (t.frozen) return;
    float d = t.decay ? decay : 0.f;
    if (dtype_ == MASTER_F32)
        be.zo_update(static_cast<float*>(theta), t.numel, t.id, noise, terms.data(), (int)terms.size(), d, t.mask_below);
    else
        be.zo_update_rounded(theta, packed, dtype_, t.numel, t.id, noise, terms.data(), (int)terms.size(), d, t.mask_below);
}

void Residency::read_tensor(const Tensor& t, float* out) {
    size_t ti = (size_t)(&t - model_.tensors.data());
    size_t ui = (size_t)tensor_unit_[ti];
    const UnitTier& tier = tiers_[ui];
    if (tier.home == Home::Ssd) {
        be_.synchronize();
        load_ssd_unit(ui, io_->data(), *host_);
        for (auto& [idx, off] : tier.layout) {
            if ((size_t)idx != ti) continue;
            if (dtype_ != MASTER_F32)
                host_->widen(out, static_cast<const uint16_t*>(io_->data()) + off, t.numel, dtype_);
            else
                std::memcpy(out, static_cast<float*>(io_->data()) + off, t.numel * sizeof(float));
        }
        return;
    }
    if (tier.shared) {
        // The shared copy holds every rank's slices as last written back; the updates still
        // pending are applied here to a copy (each rank applies them on the device at the
        // next visit: the shared copy must not take them twice).
        be_.synchronize();
        for (auto& [idx, off] : tier.layout) {
            if ((size_t)idx != ti) continue;
            const char* src = tier.shared + off * ebytes_;
            if (dtype_ == MASTER_F32) {
                std::memcpy(out, src, t.numel * sizeof(float));
                for (const Pending& p : tier.pending) update_at(*host_, t, out, false, p.terms, p.decay, p.noise);
            } else {
                std::vector<uint16_t> tmp(t.numel);
                std::memcpy(tmp.data(), src, t.numel * ebytes_);
                for (const Pending& p : tier.pending) update_at(*host_, t, tmp.data(), true, p.terms, p.decay, p.noise);
                host_->widen(out, tmp.data(), t.numel, dtype_);
            }
            host_->synchronize();
        }
        return;
    }
    flush_cpu_pending(ui);
    if (tier.home == Home::Cpu) be_.synchronize();  // a write-back copy into the master may be in flight
    if (tier.home == Home::Device && t.device16) {
        std::vector<uint16_t> h(t.numel);
        be_.download(h.data(), t.device16, t.numel * sizeof(uint16_t));
        host_->widen(out, h.data(), t.numel, dtype_);
        return;
    }
    if (tier.packed) {
        for (auto& [idx, off] : tier.layout)
            if ((size_t)idx == ti) host_->widen(out, static_cast<const uint16_t*>(tier.packed->data()) + off, t.numel, dtype_);
        return;
    }
    const float* src = tier.home == Home::Cpu ? t.master : (t.device ? t.device : t.master);
    if (!src) throw std::runtime_error("tensor " + t.name + " is not loaded");
    if (src == t.master)
        std::memcpy(out, src, t.numel * sizeof(float));
    else
        be_.download(out, src, t.numel * sizeof(float));
}

void Residency::place(const TierOptions& o) {
    const size_t nu = model_.units.size();
    tiers_.assign(nu, UnitTier{});
    tensor_unit_.assign(model_.tensors.size(), -1);
    write_back_every_ = std::max(1, o.write_back_every);
    prefetch_ = std::max(0, o.prefetch);
    if (o.slices && o.slices->size() > 1) slices_ = o.slices;
    if (o.master_dtype < MASTER_F32 || o.master_dtype > MASTER_F16)
        throw std::runtime_error("unknown master precision " + std::to_string(o.master_dtype));
    dtype_ = o.master_dtype;
    ebytes_ = master_dtype_bytes(dtype_);
    if (dtype_ != MASTER_F32) {
        // Every master takes the format's values from the start (round to nearest even;
        // exact for a bf16/fp16 checkpoint or one saved from such a run).
        for (Tensor& t : model_.tensors)
            if (t.master)
                for (size_t i = 0; i < t.numel; i++) t.master[i] = widen_one(narrow_one(t.master[i], dtype_), dtype_);
    }
    if (!o.homes.empty() && o.homes.size() != nu)
        throw std::runtime_error("placement gives " + std::to_string(o.homes.size()) + " homes for " +
                                 std::to_string(nu) + " units");
    if (!o.device_update.empty() && o.device_update.size() != nu)
        throw std::runtime_error("update modes given for " + std::to_string(o.device_update.size()) + " units; the model has " +
                                 std::to_string(nu));
    std::vector<std::string> dirs = o.spill_dirs;
    if (dirs.empty() && !o.spill_dir.empty()) dirs.push_back(o.spill_dir);
    for (const std::string& d : dirs)
        if (d.empty()) throw std::runtime_error("a spill folder is an empty path");
    std::vector<uint64_t> spill_bytes(std::max<size_t>(dirs.size(), 1), 0);
    int ssd_seen = 0;
    size_t max_floats = 0;
    for (size_t ui = 0; ui < nu; ui++) {
        UnitTier& tier = tiers_[ui];
        int h = o.homes.empty() ? 0 : o.homes[ui];
        if (h < 0 || h > 2) throw std::runtime_error("unknown home " + std::to_string(h) + " for unit " + std::to_string(ui));
        tier.home = (Home)h;
        tier.device_update = tier.home != Home::Device && !o.device_update.empty() && o.device_update[ui] != 0;
        // Sliced blocks are updated on the device (each rank writes back only its slice).
        if (slices_ && tier.home == Home::Cpu) tier.device_update = true;
        const Unit& u = model_.units[ui];
        if (tier.home != Home::Device && u.kind != UnitKind::Block)
            throw std::runtime_error("the embeddings and the head stay on the compute device; only blocks can live on the CPU or the SSD");
        for (int ti : u.tensors) {
            if (tensor_unit_[(size_t)ti] >= 0) continue;
            tensor_unit_[(size_t)ti] = (int)ui;
            tier.layout.push_back({ti, tier.floats});
            tier.floats += (model_.tensors[(size_t)ti].numel + 15) / 16 * 16;
        }
        if (tier.home != Home::Device) max_floats = std::max(max_floats, tier.floats);
        // A sliced slot holds n equal slices, a little more than the unit.
        if (slices_ && tier.home == Home::Cpu)
            max_floats = std::max(max_floats, (slice_bytes(tier) * (size_t)slices_->size() + ebytes_ - 1) / ebytes_);
        if (tier.home == Home::Ssd) {
            tier.file = ssd_seen++ % (int)spill_bytes.size();
            tier.offset = spill_bytes[(size_t)tier.file];
            spill_bytes[(size_t)tier.file] += spill_round_up(tier.floats * ebytes_);
        }
    }
    host_ = &be_;
    if (!be_.host_addressable() && max_floats > 0) {
        host_owned_ = make_cpu_backend(std::max(1, (int)std::thread::hardware_concurrency()), false);
        host_ = host_owned_.get();
    }
    if (max_floats == 0) return;
    int slots = o.stage_slots > 0 ? std::min(o.stage_slots, 2) : (be_.host_addressable() ? 1 : 2);
    stage_count_ = slots;
    // A slot holds a unit as stored: float32, or bf16/fp16 (perturbed or widened a tensor
    // group at a time as kernels need them).
    for (int s = 0; s < slots; s++) {
        if (dtype_ == MASTER_F32)
            stage_.push_back(static_cast<float*>(be_.alloc(max_floats * sizeof(float))));
        else
            raw_.push_back(static_cast<uint16_t*>(be_.alloc(max_floats * ebytes_)));
        slot_ready_.push_back(be_.event_create());
        slot_free_.push_back(be_.event_create());
        slot_wb_.push_back(be_.event_create());
    }
    stage_floats_ = max_floats;
    io_ = std::make_unique<AlignedBuffer>(max_floats * ebytes_);
    io_done_ = be_.event_create();
    wb_done_ = be_.event_create();
    updated_ = be_.event_create();
    auto pin = [&](void* p, size_t bytes) {
        if (be_.host_addressable()) return;
        be_.pin_host(p, bytes);
        pinned_.push_back(p);
    };
    pin(io_->data(), io_->capacity());
    // CPU-homed masters are uploaded (and written back) asynchronously: pin them. In
    // bf16/fp16 a unit's masters become one packed buffer in that format.
    for (size_t ui = 0; ui < nu; ui++) {
        UnitTier& tier = tiers_[ui];
        if (tier.home != Home::Cpu) continue;
        if (slices_) {
            place_sliced(ui);
            pin(tier.shared, slice_bytes(tier) * (size_t)slices_->size());
            continue;
        }
        if (dtype_ != MASTER_F32) {
            tier.packed = std::make_shared<AlignedBuffer>(tier.floats * ebytes_);
            uint16_t* dst = static_cast<uint16_t*>(tier.packed->data());
            std::memset(dst, 0, tier.floats * ebytes_);
            std::vector<float> tmp;
            for (auto& [ti, off] : tier.layout) {
                Tensor& t = model_.tensors[(size_t)ti];
                const float* src = t.master;
                if (!src) {
                    tmp.resize(t.numel);
                    model_read_tensor(t, tmp.data());
                    src = tmp.data();
                }
                for (size_t i = 0; i < t.numel; i++) dst[off + i] = narrow_one(src[i], dtype_);
                std::free(t.master);
                t.master = nullptr;
            }
            pin(tier.packed->data(), tier.packed->capacity());
            continue;
        }
        for (auto& [ti, off] : tier.layout) {
            Tensor& t = model_.tensors[(size_t)ti];
            if (t.master) pin(t.master, t.numel * sizeof(float));
        }
    }
    if (ssd_seen == 0) return;
    if (dirs.empty()) throw std::runtime_error("units placed on the SSD need a spill folder");
    for (size_t f = 0; f < dirs.size(); f++)
        if (spill_bytes[f] > 0) spills_.push_back(std::make_unique<SpillFile>(dirs[f], spill_bytes[f]));
        else spills_.push_back(nullptr);  // fewer SSD units than folders
    // Replays run on the prefetch threads. Beside a GPU the host's cores are free, so
    // each thread gets its share of them; beside the CPU backend they would take the
    // compute's cores, so one each.
    int replay_threads = be_.host_addressable()
                             ? 1
                             : std::max(1, (int)std::thread::hardware_concurrency() / std::max(1, prefetch_));
    for (int i = 0; i < prefetch_; i++) {
        replays_.push_back(make_cpu_backend(replay_threads, false));
        prefetch_bufs_.push_back(std::make_unique<AlignedBuffer>(max_floats * ebytes_));
        prefetch_done_.push_back(be_.event_create());
        pin(prefetch_bufs_.back()->data(), prefetch_bufs_.back()->capacity());
    }
    // Move the SSD-homed masters to the spill file and free their host memory.
    std::vector<float> tmp;
    for (size_t ui = 0; ui < nu; ui++) {
        if (tiers_[ui].home != Home::Ssd) continue;
        void* host = io_->data();
        std::memset(host, 0, spill_round_up(tiers_[ui].floats * ebytes_));
        for (auto& [ti, off] : tiers_[ui].layout) {
            Tensor& t = model_.tensors[(size_t)ti];
            const float* src = t.master;
            if (!src) {  // never loaded: straight from the checkpoint
                if (dtype_ == MASTER_F32) {
                    model_read_tensor(t, static_cast<float*>(host) + off);
                    continue;
                }
                tmp.resize(t.numel);
                model_read_tensor(t, tmp.data());
                src = tmp.data();
            }
            if (dtype_ == MASTER_F32)
                std::memcpy(static_cast<float*>(host) + off, src, t.numel * sizeof(float));
            else
                for (size_t i = 0; i < t.numel; i++) static_cast<uint16_t*>(host)[off + i] = narrow_one(src[i], dtype_);
            std::free(t.master);
            t.master = nullptr;
        }
        write_ssd_unit(ui, host);
    }
}

size_t Residency::slice_bytes(const UnitTier& tier) const {
    // Equal slices, each a multiple of 256 bytes (NCCL's and the copy engines' alignment).
    const size_t n = (size_t)slices_->size();
    return (tier.floats * ebytes_ + n * 256 - 1) / (n * 256) * 256;
}

// A sliced unit's home: made in shared memory by the machine's first rank, which fills it from
// its masters in the stored format; the others loaded none of these masters (binding.cpp).
void Residency::place_sliced(size_t ui) {
    UnitTier& tier = tiers_[ui];
    bool first = false;
    tier.shared = static_cast<char*>(slices_->shared(ui, slice_bytes(tier) * (size_t)slices_->size(), first));
    std::vector<float> tmp;
    for (auto& [ti, off] : tier.layout) {
        Tensor& t = model_.tensors[(size_t)ti];
        if (first) {
            const float* src = t.master;
            if (!src) {
                tmp.resize(t.numel);
                model_read_tensor(t, tmp.data());
                src = tmp.data();
            }
            if (dtype_ == MASTER_F32)
                std::memcpy(tier.shared + off * ebytes_, src, t.numel * sizeof(float));
            else
                for (size_t i = 0; i < t.numel; i++) reinterpret_cast<uint16_t*>(tier.shared)[off + i] = narrow_one(src[i], dtype_);
        }
        std::free(t.master);
        t.master = nullptr;
    }
    slices_->barrier();  // the others read it only once it is filled
}

void Residency::write_ssd_unit(size_t ui, const void* host) {
    UnitTier& tier = tiers_[ui];
    size_t bytes = tier.floats * ebytes_;
    tier.checksum = spill_checksum(host, bytes);
    spills_[(size_t)tier.file]->write(tier.offset, host, spill_round_up(bytes));
}

// The SSD copy of a unit, verified, with the updates not yet written back
// replayed in order (bit for bit what updating it in place would have given);
// written back once K updates have piled up. A unit updated on the device is
// only read and verified here: its replay happens on the device.
void Residency::load_ssd_unit(size_t ui, void* host, Backend& replay, bool replay_pending) {
    UnitTier& tier = tiers_[ui];
    size_t bytes = tier.floats * ebytes_;
    SpillFile& file = *spills_[(size_t)tier.file];
    file.read(tier.offset, host, spill_round_up(bytes));
    if (spill_checksum(host, bytes) != tier.checksum) {
        const Unit& u = model_.units[ui];
        throw std::runtime_error("spill data of block " + std::to_string(u.index) + " is corrupt (checksum mismatch in " +
                                 file.path() + " at byte " + std::to_string(tier.offset) + "); not training on it");
    }
    if (tier.pending.empty() || !replay_pending) return;
    for (const Pending& p : tier.pending) {
        for (auto& [ti, off] : tier.layout) {
            const Tensor& t = model_.tensors[(size_t)ti];
            update_at(replay, t, static_cast<char*>(host) + off * ebytes_, true, p.terms, p.decay, p.noise);
        }
    }
    replay.synchronize();
    if ((int)tier.pending.size() >= write_back_every_) {
        write_ssd_unit(ui, host);
        tier.pending.clear();
    }
}

Residency::Staged Residency::stage_unit(size_t ui, AlignedBuffer* loaded, Backend::Event* source_done) {
    UnitTier& tier = tiers_[ui];
    Staged s{ui, next_slot_, loaded, -1};
    next_slot_ = (next_slot_ + 1) % stage_count_;
    const char* host = loaded ? static_cast<const char*>(loaded->data()) : nullptr;
    if (tier.home == Home::Ssd && !host) {
        be_.host_wait(io_done_);  // the previous upload from io_ has left it
        load_ssd_unit(ui, io_->data(), *host_, !tier.device_update);
        s.buf = io_.get();
        host = static_cast<const char*>(io_->data());
    }
    if (tier.packed) host = static_cast<const char*>(tier.packed->data());
    // The slot is free once the compute that last read it is done. bf16/fp16 units land
    // in the slot's raw half-width buffer and are widened on the compute queue.
    be_.wait(Backend::Queue::Copy, slot_free_[(size_t)s.slot]);
    be_.wait(Backend::Queue::Copy, slot_wb_[(size_t)s.slot]);
    char* dst = dtype_ == MASTER_F32 ? reinterpret_cast<char*>(stage_[(size_t)s.slot]) : reinterpret_cast<char*>(raw_[(size_t)s.slot]);
    if (tier.shared) {
        // This rank's slice over its own link, then the others' from the group (the shared home
        // is laid out as the slot is, padding included).
        const size_t sb = slice_bytes(tier);
        const size_t at = (size_t)slices_->rank() * sb;
        be_.upload_on(Backend::Queue::Copy, dst + at, tier.shared + at, sb);
        h2d_bytes_ += sb;
        slices_->gather(be_, dst, sb);
        be_.record(slot_ready_[(size_t)s.slot], Backend::Queue::Copy);
        return s;
    }
    for (auto& [ti, off] : tier.layout) {
        const Tensor& t = model_.tensors[(size_t)ti];
        const void* src = host ? static_cast<const void*>(host + off * ebytes_) : t.master;
        be_.upload_on(Backend::Queue::Copy, dst + off * ebytes_, src, t.numel * ebytes_);
        h2d_bytes_ += t.numel * ebytes_;
    }
    be_.record(slot_ready_[(size_t)s.slot], Backend::Queue::Copy);
    if (tier.home == Home::Ssd) be_.record(source_done, Backend::Queue::Copy);
    return s;
}

void Residency::use_staged(Staged& s) {
    UnitTier& tier = tiers_[s.unit];
    float* slot = dtype_ == MASTER_F32 ? stage_[(size_t)s.slot] : nullptr;
    uint16_t* raw = dtype_ == MASTER_F32 ? nullptr : raw_[(size_t)s.slot];
    be_.wait(Backend::Queue::Compute, slot_ready_[(size_t)s.slot]);
    for (auto& [ti, off] : tier.layout) {
        Tensor& t = model_.tensors[(size_t)ti];
        if (raw)
            t.device16 = raw + off;
        else
            t.device = slot + off;
    }
    if (!tier.device_update || tier.pending.empty()) return;
    // ZO2's way: the pending updates are applied to the staged copy on the device, and
    // the result goes back home (CPU master now; SSD every K updates, replayed until then).
    for (const Pending& p : tier.pending)
        for (auto& [ti, off] : tier.layout)
            update_at(be_, model_.tensors[(size_t)ti], raw ? static_cast<void*>(raw + off) : static_cast<void*>(slot + off),
                      raw != nullptr, p.terms, p.decay, p.noise);
    bool write_back = tier.home == Home::Cpu || (int)tier.pending.size() >= write_back_every_;
    if (!write_back) return;
    char* home = tier.packed ? static_cast<char*>(tier.packed->data())
                 : tier.home == Home::Ssd ? static_cast<char*>(s.buf->data()) : nullptr;
    // The copy home runs on the write-back queue beside this unit's forward pass and the next
    // unit's upload. The CPU master is next read by an upload of the next pass (passes end with
    // a synchronize); an SSD write waits for it in finish_write_back; the next upload into this
    // slot waits for it (slot_wb_) as well as for the slot's compute (slot_free_).
    be_.record(updated_, Backend::Queue::Compute);
    be_.wait(Backend::Queue::CopyOut, updated_);
    if (tier.shared) {
        // Every rank applied the same updates to the whole block; each writes back its slice.
        const size_t sb = slice_bytes(tier);
        const size_t at = (size_t)slices_->rank() * sb;
        const char* slot_bytes = raw ? reinterpret_cast<const char*>(raw) : reinterpret_cast<const char*>(slot);
        be_.download_on(Backend::Queue::CopyOut, tier.shared + at, slot_bytes + at, sb);
        d2h_bytes_ += sb;
        be_.record(wb_done_, Backend::Queue::CopyOut);
        be_.record(slot_wb_[(size_t)s.slot], Backend::Queue::CopyOut);
        tier.pending.clear();
        return;
    }
    for (auto& [ti, off] : tier.layout) {
        Tensor& t = model_.tensors[(size_t)ti];
        const void* src = raw ? static_cast<const void*>(raw + off) : static_cast<const void*>(slot + off);
        be_.download_on(Backend::Queue::CopyOut, home ? static_cast<void*>(home + off * ebytes_) : t.master, src,
                              t.numel * ebytes_);
        d2h_bytes_ += t.numel * ebytes_;
    }
    be_.record(wb_done_, Backend::Queue::CopyOut);
    be_.record(slot_wb_[(size_t)s.slot], Backend::Queue::CopyOut);
    // An SSD unit's pending updates are dropped only once the file holds them.
    s.ssd_write = tier.home == Home::Ssd;
    if (!s.ssd_write) tier.pending.clear();
}

void Residency::release_residency(Staged& s) {
    UnitTier& tier = tiers_[s.unit];
    for (auto& [ti, off] : tier.layout) {
        model_.tensors[(size_t)ti].device = nullptr;
        model_.tensors[(size_t)ti].device16 = nullptr;
    }
    be_.record(slot_free_[(size_t)s.slot], Backend::Queue::Compute);
    finish_write_back(s);
}

void Residency::finish_write_back(Staged& s) {
    if (!s.ssd_write) return;
    be_.host_wait(wb_done_);
    write_ssd_unit(s.unit, s.buf->data());
    tiers_[s.unit].pending.clear();
    s.ssd_write = false;
}

void Residency::pass(const std::function<void(size_t unit)>& visit, double& io_ms) {
    // SSD blocks are read and verified (and replayed, when updated at home) up to
    // `prefetch_` units ahead on their own threads while earlier blocks compute; with two
    // staging slots the next streamed unit's upload is queued before this one computes.
    std::vector<size_t> streamed, ssd_units;
    for (size_t ui = 1; ui + 1 < model_.units.size(); ui++) {
        if (tiers_[ui].home != Home::Device) streamed.push_back(ui);
        if (tiers_[ui].home == Home::Ssd) ssd_units.push_back(ui);
    }
    std::map<size_t, std::pair<std::future<void>, size_t>> inflight;  // unit -> (read, prefetch buffer)
    std::vector<size_t> free_bufs;
    for (size_t b = prefetch_bufs_.size(); b-- > 0;) free_bufs.push_back(b);
    size_t next_prefetch = 0;
    auto launch = [&]() {
        while (next_prefetch < ssd_units.size() && !free_bufs.empty()) {
            size_t ui = ssd_units[next_prefetch++];
            size_t b = free_bufs.back();
            free_bufs.pop_back();
            be_.host_wait(prefetch_done_[b]);  // its last upload has left it
            float* buf = static_cast<float*>(prefetch_bufs_[b]->data());
            bool replay = !tiers_[ui].device_update;
            Backend* rb = replays_[b].get();
            inflight[ui] = {std::async(std::launch::async, [this, ui, buf, rb, replay] { load_ssd_unit(ui, buf, *rb, replay); }), b};
        }
    };
    // Joins every read still in flight (on an error, before the buffers they write go away).
    struct JoinReads {
        std::map<size_t, std::pair<std::future<void>, size_t>>& m;
        ~JoinReads() {
            for (auto& kv : m)
                if (kv.second.first.valid()) kv.second.first.wait();
        }
    } join_reads{inflight};
    auto stage = [&](size_t ui) -> Staged {
        auto it = inflight.find(ui);
        if (it == inflight.end()) return stage_unit(ui, nullptr, io_done_);
        it->second.first.get();  // rethrows a read or checksum error
        size_t b = it->second.second;
        inflight.erase(it);
        Staged s = stage_unit(ui, prefetch_bufs_[b].get(), prefetch_done_[b]);
        s.prefetch_buf = (int)b;
        return s;
    };
    launch();
    const bool ahead = stage_count_ >= 2;
    size_t next_streamed = 0;
    Staged cur{}, next{};
    // io_ms: the compute path's time spent staging units (waiting for reads, replays, uploads).
    auto stage_next = [&]() {
        if (next_streamed < streamed.size()) next = stage(streamed[next_streamed++]);
    };
    if (ahead) {
        auto tr = Clock::now();
        stage_next();
        io_ms += ms_since(tr);
    }
    for (size_t ui = 1; ui + 1 < model_.units.size(); ui++) {
        bool is_streamed = tiers_[ui].home != Home::Device;
        if (is_streamed) {
            auto tr = Clock::now();
            if (!ahead) stage_next();
            cur = next;
            use_staged(cur);
            // Staging the next unit without read-ahead reuses io_: this unit's write-back leaves it first.
            if (ahead && cur.prefetch_buf < 0) finish_write_back(cur);
            if (ahead) stage_next();
            io_ms += ms_since(tr);
        }
        visit(ui);
        if (is_streamed) {
            release_residency(cur);
            if (cur.prefetch_buf >= 0) {
                free_bufs.push_back((size_t)cur.prefetch_buf);
                launch();
            }
        }
    }
}

void Residency::update(const std::vector<UpdateTerm>& terms, float decay, int noise) {
    // Each unit is updated where its master lives; SSD units queue the update and
    // replay it on their next read (lazy write-back); units updated on the device
    // queue it for their next visit there.
    // A unit whose tensors are all frozen (a trainable set that leaves it out) is read-only: it
    // queues nothing, so it is never replayed nor written back.
    for (size_t ui = 0; ui < tiers_.size(); ui++) {
        UnitTier& tier = tiers_[ui];
        bool trained = false;
        for (auto& [ti, off] : tier.layout) trained |= !model_.tensors[(size_t)ti].frozen;
        if (!trained) continue;
        if (tier.home == Home::Ssd || tier.device_update) {
            tier.pending.push_back({terms, decay, noise});
            continue;
        }
        Backend* be = tier.home == Home::Cpu ? host_ : &be_;
        for (auto& [ti, off] : tier.layout) {
            const Tensor& t = model_.tensors[(size_t)ti];
            bool packed = tier.packed != nullptr || t.device16 != nullptr;
            void* theta = tier.packed ? static_cast<void*>(static_cast<uint16_t*>(tier.packed->data()) + off)
                          : t.device16 ? static_cast<void*>(t.device16)
                          : tier.home == Home::Cpu ? static_cast<void*>(t.master) : static_cast<void*>(t.device);
            update_at(*be, t, theta, packed, terms, decay, noise);
        }
    }
    be_.synchronize();
    if (host_ != &be_) host_->synchronize();
}

TierStats Residency::stats() const {
    TierStats s;
    for (size_t ui = 0; ui < tiers_.size(); ui++) {
        uint64_t b = tiers_[ui].floats * sizeof(float);
        if (tiers_[ui].home == Home::Device)
            s.device_weight_bytes += dtype_ != MASTER_F32 && model_.units[ui].kind == UnitKind::Block ? tiers_[ui].floats * ebytes_ : b;
        else if (tiers_[ui].home == Home::Cpu && tiers_[ui].shared) s.cpu_bytes += slice_bytes(tiers_[ui]);  // its share of the machine's copy
        else if (tiers_[ui].home == Home::Cpu) s.cpu_bytes += tiers_[ui].floats * ebytes_;
    }
    s.stage_slots = stage_count_;
    s.device_stage_bytes = stage_floats_ * ebytes_ * (uint64_t)stage_count_;
    s.master_dtype = master_dtype_name(dtype_);
    if (io_) s.cpu_bytes += io_->capacity();
    for (auto& b : prefetch_bufs_) s.cpu_bytes += b->capacity();
    s.h2d_bytes = h2d_bytes_;
    s.d2h_bytes = d2h_bytes_;
    if (slices_) {
        s.slice_ranks = slices_->size();
        s.slice_transport = slices_->transport();
    }
    for (const auto& f : spills_) {
        if (!f) continue;
        s.ssd_bytes += f->size();
        s.ssd_read_bytes += f->bytes_read();
        s.ssd_write_bytes += f->bytes_written();
        s.spill_files.push_back(f->path());
        if (s.spill_file.empty()) s.spill_file = f->path();
        s.io_path = f->io_path();
    }
    return s;
}

}  // namespace spw
