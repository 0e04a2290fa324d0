#include "spillway/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <thread>
#include <unordered_map>

#include "spillway/noise.h"
#include "spillway/precision.h"
#include "tier/spill.h"

namespace spw {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void check_cancel(const std::atomic<bool>* cancel) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw CancelledError();
}

}  // namespace

// Per-batch index arrays, derived once and shared by every stream and unit
// (pointers into the engine's int arena).
struct Engine::Prepared {
    int N = 0, M = 0, nseq = 0;
    const int32_t *ids = nullptr, *posidx = nullptr, *positions = nullptr, *seq_start = nullptr, *rows = nullptr,
                  *targets = nullptr;
};

Engine::Engine(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, const TierOptions& tiers)
    : backend_(std::move(backend)), model_(std::move(model)) {
    const ModelConfig& c = model_->config;
    if (c.rope_theta > 0.f) {
        int half = c.head_dim / 2;
        inv_freq_.resize((size_t)half);
        for (int i = 0; i < half; i++)
            inv_freq_[(size_t)i] = 1.0f / powf(c.rope_theta, (float)(2 * i) / (float)c.head_dim);
    }
    resident_ = !backend_->host_addressable();
    try {
        setup_tiers(tiers);
        if (!inv_freq_.empty()) {
            if (resident_) {
                inv_freq_dev_ = static_cast<float*>(backend_->alloc(inv_freq_.size() * sizeof(float)));
                backend_->upload(inv_freq_dev_, inv_freq_.data(), inv_freq_.size() * sizeof(float));
            } else {
                inv_freq_dev_ = inv_freq_.data();
            }
        }
        // Device-homed units: every master is uploaded once; kernels and updates use the
        // device copies. Streamed units pass through the staging slots instead.
        // With bf16/fp16 masters a resident block is kept in that format on the device too (half the
        // memory); its groups are widened or perturbed into float32 as kernels need them, like a
        // staged block's. The embeddings and the head stay float32 (their kernels read them whole).
        for (size_t ti = 0; ti < model_->tensors.size(); ti++) {
            Tensor& t = model_->tensors[ti];
            if (!t.master) continue;
            if (tiers_[(size_t)tensor_unit_[ti]].home != Home::Device) continue;
            if (dtype_ != MASTER_F32 && model_->units[(size_t)tensor_unit_[ti]].kind == UnitKind::Block) {
                std::vector<uint16_t> h(t.numel);
                for (size_t i = 0; i < t.numel; i++) h[i] = narrow_one(t.master[i], dtype_);
                t.device16 = static_cast<uint16_t*>(backend_->alloc(std::max<size_t>(t.numel, 1) * sizeof(uint16_t)));
                resident16_.push_back(t.device16);
                backend_->upload(t.device16, h.data(), t.numel * sizeof(uint16_t));
                std::free(t.master);
                t.master = nullptr;
                continue;
            }
            if (!resident_) {
                t.device = t.master;
                continue;
            }
            t.device = static_cast<float*>(backend_->alloc(std::max<size_t>(t.numel, 1) * sizeof(float)));
            backend_->upload(t.device, t.master, t.numel * sizeof(float));
        }
    } catch (...) {
        release_resident();
        release_tiers();
        throw;
    }
}

void Engine::release_resident() {
    for (uint16_t* p : resident16_) backend_->release(p);
    resident16_.clear();
    if (!resident_) return;
    for (Tensor& t : model_->tensors) {
        if (t.device && t.device != t.master) backend_->release(t.device);
        t.device = nullptr;
    }
    if (inv_freq_dev_) backend_->release(inv_freq_dev_);
    inv_freq_dev_ = nullptr;
}

// Staging slots, events and host registrations (everything setup_tiers made on the backend).
void Engine::release_tiers() {
    backend_->synchronize();
    for (float* s : stage_) backend_->release(s);
    stage_.clear();
    for (uint16_t* r : raw_) backend_->release(r);
    raw_.clear();
    for (auto* evs : {&slot_ready_, &slot_free_, &slot_wb_, &prefetch_done_})
        for (Backend::Event* e : *evs) backend_->event_destroy(e);
    slot_ready_.clear();
    slot_free_.clear();
    slot_wb_.clear();
    prefetch_done_.clear();
    for (Backend::Event** e : {&io_done_, &wb_done_, &updated_}) {
        if (*e) backend_->event_destroy(*e);
        *e = nullptr;
    }
    for (void* p : pinned_) backend_->unpin_host(p);
    pinned_.clear();
}

// A CPU-homed unit updated on the device keeps its last update pending until its next
// visit; whoever reads its master first applies it here, on the host (same values).
void Engine::flush_cpu_pending(size_t ui) {
    UnitTier& tier = tiers_[ui];
    if (tier.home != Home::Cpu || tier.pending.empty()) return;
    backend_->synchronize();  // write-backs still in flight land first
    for (const Pending& p : tier.pending)
        for (auto& [ti, off] : tier.layout) {
            Tensor& t = model_->tensors[(size_t)ti];
            update_at(*host_, t, tier.packed ? (void*)(static_cast<uint16_t*>(tier.packed->data()) + off) : t.master,
                      tier.packed != nullptr, p.terms, p.decay, p.noise);
        }
    host_->synchronize();
    tier.pending.clear();
}

void Engine::update_at(Backend& be, const Tensor& t, void* theta, bool packed, const std::vector<UpdateTerm>& terms,
                       float decay, int noise) {
    float d = t.decay ? decay : 0.f;
    if (dtype_ == MASTER_F32)
        be.zo_update(static_cast<float*>(theta), t.numel, t.id, noise, terms.data(), (int)terms.size(), d);
    else
        be.zo_update_rounded(theta, packed, dtype_, t.numel, t.id, noise, terms.data(), (int)terms.size(), d);
}

void Engine::read_tensor(const Tensor& t, float* out) {
    size_t ti = (size_t)(&t - model_->tensors.data());
    size_t ui = (size_t)tensor_unit_[ti];
    const UnitTier& tier = tiers_[ui];
    if (tier.home == Home::Ssd) {
        backend_->synchronize();
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
    flush_cpu_pending(ui);
    if (tier.home == Home::Cpu) backend_->synchronize();  // a write-back copy into the master may be in flight
    if (tier.home == Home::Device && t.device16) {
        std::vector<uint16_t> h(t.numel);
        backend_->download(h.data(), t.device16, t.numel * sizeof(uint16_t));
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
        backend_->download(out, src, t.numel * sizeof(float));
}

Engine::~Engine() {
    release_tiers();
    release_resident();
    if (zbuf_) backend_->release(zbuf_);
    if (wbuf_) backend_->release(wbuf_);
    for (float* h : hbuf_)
        if (h) backend_->release(h);
    if (act_) backend_->release(act_);
    if (ints_) backend_->release(ints_);
    if (lp_) backend_->release(lp_);
}

void Engine::setup_tiers(const TierOptions& o) {
    const size_t nu = model_->units.size();
    tiers_.assign(nu, UnitTier{});
    tensor_unit_.assign(model_->tensors.size(), -1);
    write_back_every_ = std::max(1, o.write_back_every);
    prefetch_ = std::max(0, o.prefetch);
    if (o.master_dtype < MASTER_F32 || o.master_dtype > MASTER_F16)
        throw std::runtime_error("unknown master precision " + std::to_string(o.master_dtype));
    dtype_ = o.master_dtype;
    ebytes_ = master_dtype_bytes(dtype_);
    if (dtype_ != MASTER_F32) {
        // Every master takes the format's values from the start (round to nearest even;
        // exact for a bf16/fp16 checkpoint or one saved from such a run).
        for (Tensor& t : model_->tensors)
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
        const Unit& u = model_->units[ui];
        if (tier.home != Home::Device && u.kind != UnitKind::Block)
            throw std::runtime_error("the embeddings and the head stay on the compute device; only blocks can live on the CPU or the SSD");
        for (auto& kv : u.roles) {
            if (tensor_unit_[(size_t)kv.second] >= 0) continue;
            tensor_unit_[(size_t)kv.second] = (int)ui;
            tier.layout.push_back({kv.second, tier.floats});
            tier.floats += (model_->tensors[(size_t)kv.second].numel + 15) / 16 * 16;
        }
        if (tier.home != Home::Device) max_floats = std::max(max_floats, tier.floats);
        if (tier.home == Home::Ssd) {
            tier.file = ssd_seen++ % (int)spill_bytes.size();
            tier.offset = spill_bytes[(size_t)tier.file];
            spill_bytes[(size_t)tier.file] += spill_round_up(tier.floats * ebytes_);
        }
    }
    host_ = backend_.get();
    if (!backend_->host_addressable() && max_floats > 0) {
        host_owned_ = make_cpu_backend(std::max(1, (int)std::thread::hardware_concurrency()), false);
        host_ = host_owned_.get();
    }
    if (max_floats == 0) return;
    int slots = o.stage_slots > 0 ? std::min(o.stage_slots, 2) : (backend_->host_addressable() ? 1 : 2);
    stage_count_ = slots;
    // A slot holds a unit as stored: float32, or bf16/fp16 (perturbed or widened a tensor
    // group at a time as kernels need them).
    for (int s = 0; s < slots; s++) {
        if (dtype_ == MASTER_F32)
            stage_.push_back(static_cast<float*>(backend_->alloc(max_floats * sizeof(float))));
        else
            raw_.push_back(static_cast<uint16_t*>(backend_->alloc(max_floats * ebytes_)));
        slot_ready_.push_back(backend_->event_create());
        slot_free_.push_back(backend_->event_create());
        slot_wb_.push_back(backend_->event_create());
    }
    stage_floats_ = max_floats;
    io_ = std::make_unique<AlignedBuffer>(max_floats * ebytes_);
    io_done_ = backend_->event_create();
    wb_done_ = backend_->event_create();
    updated_ = backend_->event_create();
    auto pin = [&](void* p, size_t bytes) {
        if (backend_->host_addressable()) return;
        backend_->pin_host(p, bytes);
        pinned_.push_back(p);
    };
    pin(io_->data(), io_->capacity());
    // CPU-homed masters are uploaded (and written back) asynchronously: pin them. In
    // bf16/fp16 a unit's masters become one packed buffer in that format.
    for (size_t ui = 0; ui < nu; ui++) {
        UnitTier& tier = tiers_[ui];
        if (tier.home != Home::Cpu) continue;
        if (dtype_ != MASTER_F32) {
            tier.packed = std::make_shared<AlignedBuffer>(tier.floats * ebytes_);
            uint16_t* dst = static_cast<uint16_t*>(tier.packed->data());
            std::memset(dst, 0, tier.floats * ebytes_);
            std::vector<float> tmp;
            for (auto& [ti, off] : tier.layout) {
                Tensor& t = model_->tensors[(size_t)ti];
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
            Tensor& t = model_->tensors[(size_t)ti];
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
    int replay_threads = backend_->host_addressable()
                             ? 1
                             : std::max(1, (int)std::thread::hardware_concurrency() / std::max(1, prefetch_));
    for (int i = 0; i < prefetch_; i++) {
        replays_.push_back(make_cpu_backend(replay_threads, false));
        prefetch_bufs_.push_back(std::make_unique<AlignedBuffer>(max_floats * ebytes_));
        prefetch_done_.push_back(backend_->event_create());
        pin(prefetch_bufs_.back()->data(), prefetch_bufs_.back()->capacity());
    }
    // Move the SSD-homed masters to the spill file and free their host memory.
    std::vector<float> tmp;
    for (size_t ui = 0; ui < nu; ui++) {
        if (tiers_[ui].home != Home::Ssd) continue;
        void* host = io_->data();
        std::memset(host, 0, spill_round_up(tiers_[ui].floats * ebytes_));
        for (auto& [ti, off] : tiers_[ui].layout) {
            Tensor& t = model_->tensors[(size_t)ti];
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

void Engine::write_ssd_unit(size_t ui, const void* host) {
    UnitTier& tier = tiers_[ui];
    size_t bytes = tier.floats * ebytes_;
    tier.checksum = spill_checksum(host, bytes);
    spills_[(size_t)tier.file]->write(tier.offset, host, spill_round_up(bytes));
}

// The SSD copy of a unit, verified, with the updates not yet written back
// replayed in order (bit for bit what updating it in place would have given);
// written back once K updates have piled up. A unit updated on the device is
// only read and verified here: its replay happens on the device.
void Engine::load_ssd_unit(size_t ui, void* host, Backend& replay, bool replay_pending) {
    UnitTier& tier = tiers_[ui];
    size_t bytes = tier.floats * ebytes_;
    SpillFile& file = *spills_[(size_t)tier.file];
    file.read(tier.offset, host, spill_round_up(bytes));
    if (spill_checksum(host, bytes) != tier.checksum) {
        const Unit& u = model_->units[ui];
        throw std::runtime_error("spill data of block " + std::to_string(u.index) + " is corrupt (checksum mismatch in " +
                                 file.path() + " at byte " + std::to_string(tier.offset) + "); not training on it");
    }
    if (tier.pending.empty() || !replay_pending) return;
    for (const Pending& p : tier.pending) {
        for (auto& [ti, off] : tier.layout) {
            const Tensor& t = model_->tensors[(size_t)ti];
            update_at(replay, t, static_cast<char*>(host) + off * ebytes_, true, p.terms, p.decay, p.noise);
        }
    }
    replay.synchronize();
    if ((int)tier.pending.size() >= write_back_every_) {
        write_ssd_unit(ui, host);
        tier.pending.clear();
    }
}

Engine::Staged Engine::stage_unit(size_t ui, AlignedBuffer* loaded, Backend::Event* source_done) {
    UnitTier& tier = tiers_[ui];
    Staged s{ui, next_slot_, loaded, -1};
    next_slot_ = (next_slot_ + 1) % stage_count_;
    const char* host = loaded ? static_cast<const char*>(loaded->data()) : nullptr;
    if (tier.home == Home::Ssd && !host) {
        backend_->host_wait(io_done_);  // the previous upload from io_ has left it
        load_ssd_unit(ui, io_->data(), *host_, !tier.device_update);
        s.buf = io_.get();
        host = static_cast<const char*>(io_->data());
    }
    if (tier.packed) host = static_cast<const char*>(tier.packed->data());
    // The slot is free once the compute that last read it is done. bf16/fp16 units land
    // in the slot's raw half-width buffer and are widened on the compute queue.
    backend_->wait(Backend::Queue::Copy, slot_free_[(size_t)s.slot]);
    backend_->wait(Backend::Queue::Copy, slot_wb_[(size_t)s.slot]);
    char* dst = dtype_ == MASTER_F32 ? reinterpret_cast<char*>(stage_[(size_t)s.slot]) : reinterpret_cast<char*>(raw_[(size_t)s.slot]);
    for (auto& [ti, off] : tier.layout) {
        const Tensor& t = model_->tensors[(size_t)ti];
        const void* src = host ? static_cast<const void*>(host + off * ebytes_) : t.master;
        backend_->upload_on(Backend::Queue::Copy, dst + off * ebytes_, src, t.numel * ebytes_);
        h2d_bytes_ += t.numel * ebytes_;
    }
    backend_->record(slot_ready_[(size_t)s.slot], Backend::Queue::Copy);
    if (tier.home == Home::Ssd) backend_->record(source_done, Backend::Queue::Copy);
    return s;
}

void Engine::use_staged(Staged& s) {
    UnitTier& tier = tiers_[s.unit];
    float* slot = dtype_ == MASTER_F32 ? stage_[(size_t)s.slot] : nullptr;
    uint16_t* raw = dtype_ == MASTER_F32 ? nullptr : raw_[(size_t)s.slot];
    backend_->wait(Backend::Queue::Compute, slot_ready_[(size_t)s.slot]);
    for (auto& [ti, off] : tier.layout) {
        Tensor& t = model_->tensors[(size_t)ti];
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
            update_at(*backend_, model_->tensors[(size_t)ti], raw ? static_cast<void*>(raw + off) : static_cast<void*>(slot + off),
                      raw != nullptr, p.terms, p.decay, p.noise);
    bool write_back = tier.home == Home::Cpu || (int)tier.pending.size() >= write_back_every_;
    if (!write_back) return;
    char* home = tier.packed ? static_cast<char*>(tier.packed->data())
                 : tier.home == Home::Ssd ? static_cast<char*>(s.buf->data()) : nullptr;
    // The copy home runs on the write-back queue beside this unit's forward pass and the next
    // unit's upload. The CPU master is next read by an upload of the next pass (passes end with
    // a synchronize); an SSD write waits for it in finish_write_back; the next upload into this
    // slot waits for it (slot_wb_) as well as for the slot's compute (slot_free_).
    backend_->record(updated_, Backend::Queue::Compute);
    backend_->wait(Backend::Queue::CopyOut, updated_);
    for (auto& [ti, off] : tier.layout) {
        Tensor& t = model_->tensors[(size_t)ti];
        const void* src = raw ? static_cast<const void*>(raw + off) : static_cast<const void*>(slot + off);
        backend_->download_on(Backend::Queue::CopyOut, home ? static_cast<void*>(home + off * ebytes_) : t.master, src,
                              t.numel * ebytes_);
        d2h_bytes_ += t.numel * ebytes_;
    }
    backend_->record(wb_done_, Backend::Queue::CopyOut);
    backend_->record(slot_wb_[(size_t)s.slot], Backend::Queue::CopyOut);
    // An SSD unit's pending updates are dropped only once the file holds them.
    s.ssd_write = tier.home == Home::Ssd;
    if (!s.ssd_write) tier.pending.clear();
}

void Engine::release_residency(Staged& s) {
    UnitTier& tier = tiers_[s.unit];
    for (auto& [ti, off] : tier.layout) {
        model_->tensors[(size_t)ti].device = nullptr;
        model_->tensors[(size_t)ti].device16 = nullptr;
    }
    backend_->record(slot_free_[(size_t)s.slot], Backend::Queue::Compute);
    finish_write_back(s);
}

void Engine::finish_write_back(Staged& s) {
    if (!s.ssd_write) return;
    backend_->host_wait(wb_done_);
    write_ssd_unit(s.unit, s.buf->data());
    tiers_[s.unit].pending.clear();
    s.ssd_write = false;
}

TierStats Engine::tier_stats() const {
    TierStats s;
    for (size_t ui = 0; ui < tiers_.size(); ui++) {
        uint64_t b = tiers_[ui].floats * sizeof(float);
        if (tiers_[ui].home == Home::Device)
            s.device_weight_bytes += dtype_ != MASTER_F32 && model_->units[ui].kind == UnitKind::Block ? tiers_[ui].floats * ebytes_ : b;
        else if (tiers_[ui].home == Home::Cpu) s.cpu_bytes += tiers_[ui].floats * ebytes_;
    }
    s.stage_slots = stage_count_;
    s.device_stage_bytes = stage_floats_ * ebytes_ * (uint64_t)stage_count_;
    s.master_dtype = master_dtype_name(dtype_);
    if (io_) s.cpu_bytes += io_->capacity();
    for (auto& b : prefetch_bufs_) s.cpu_bytes += b->capacity();
    s.h2d_bytes = h2d_bytes_;
    s.d2h_bytes = d2h_bytes_;
    s.scratch_bytes = (uint64_t)unit_capacity_ * 2 * sizeof(float);
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

void Engine::validate(const Batch& b) const {
    const ModelConfig& c = model_->config;
    int nseq = b.num_sequences();
    if (nseq <= 0 || b.num_examples() <= 0) throw std::runtime_error("batch is empty");
    if (b.seq_start.front() != 0 || b.seq_start.back() != b.num_tokens())
        throw std::runtime_error("batch sequence offsets do not cover the tokens");
    int nspans = nseq;
    if (!b.span_start.empty()) {
        if ((int)b.span_start.size() != nseq + 1 || b.span_start.front() != 0)
            throw std::runtime_error("batch span offsets need one entry per sequence plus one, starting at 0");
        for (int s = 0; s < nseq; s++)
            if (b.span_start[(size_t)s + 1] <= b.span_start[(size_t)s])
                throw std::runtime_error("sequence " + std::to_string(s) + " has no scored span");
        nspans = b.span_start.back();
    }
    if ((int)b.score_start.size() != nspans || (int)b.score_end.size() != nspans)
        throw std::runtime_error(b.span_start.empty() ? "batch needs one scored span per sequence"
                                                      : "batch span offsets do not cover the scored spans");
    if (b.example_start.front() != 0 || b.example_start.back() != nseq)
        throw std::runtime_error("batch example offsets do not cover the sequences");
    if ((int)b.example_kind.size() != b.num_examples() || (int)b.label.size() != b.num_examples())
        throw std::runtime_error("batch needs a kind and a label per example");
    for (int32_t t : b.tokens)
        if (t < 0 || t >= c.vocab)
            throw std::runtime_error("token id " + std::to_string(t) + " outside the vocabulary (" +
                                     std::to_string(c.vocab) + ")");
    for (int s = 0; s < nseq; s++) {
        int T = b.seq_start[s + 1] - b.seq_start[s];
        if (T <= 0) throw std::runtime_error("sequence " + std::to_string(s) + " is empty");
        if (T > c.max_positions)
            throw std::runtime_error("sequence " + std::to_string(s) + " has " + std::to_string(T) +
                                     " tokens; the model allows " + std::to_string(c.max_positions));
        // Spans are non-empty, in order and disjoint; the first token is never scored.
        int prev_end = 1;
        for (int k = b.first_span(s); k < b.end_span(s); k++) {
            if (b.score_start[k] < prev_end || b.score_end[k] > T || b.score_start[k] >= b.score_end[k])
                throw std::runtime_error("sequence " + std::to_string(s) + " has an invalid scored span");
            prev_end = b.score_end[k];
        }
    }
    for (int e = 0; e < b.num_examples(); e++) {
        int ns = b.example_start[e + 1] - b.example_start[e];
        if (ns <= 0) throw std::runtime_error("example " + std::to_string(e) + " has no sequence");
        if (b.example_kind[e] == EXAMPLE_CLASSIFY) {
            if (b.label[e] < 0 || b.label[e] >= ns)
                throw std::runtime_error("example " + std::to_string(e) + " has a label outside its candidates");
        } else if (b.example_kind[e] != EXAMPLE_LM) {
            throw std::runtime_error("example " + std::to_string(e) + " has an unknown kind");
        }
    }
}

namespace {
// The tensor groups one kernel call reads together: a unit's weights are perturbed one group at
// a time, right before the call, so the working copies are the size of the largest group rather
// than of the whole unit.
const std::vector<std::vector<const char*>>& op_groups() {
    static const std::vector<std::vector<const char*>> g = {
        {"attn_norm_w", "attn_norm_b"}, {"qkv_w", "qkv_b"}, {"q_w", "q_b"},       {"k_w", "k_b"},
        {"v_w", "v_b"},                 {"o_w", "o_b"},     {"mlp_norm_w", "mlp_norm_b"},
        {"gate_w", "gate_b"},           {"up_w", "up_b"},   {"down_w", "down_b"}, {"fc1_w", "fc1_b"},
        {"fc2_w", "fc2_b"},             {"norm_w", "norm_b", "lm_head"},
    };
    return g;
}
size_t pad16(size_t n) { return (n + 15) / 16 * 16; }
}  // namespace

void Engine::ensure_buffers(int N, int M, int nstreams) {
    const ModelConfig& c = model_->config;
    size_t C = (size_t)c.hidden, I = (size_t)c.intermediate;
    size_t qd = (size_t)c.heads * c.head_dim, kvd = (size_t)c.kv_heads * c.head_dim;
    size_t rows = (size_t)std::max(N, M);
    // a, tmp: [N, C]; q, att: [N, qd]; k, v: [N, kvd] (or fused qkv [N, 3C]); m1, m2: [N, max(I, qd)]
    // Per stream (streams run through a block in lockstep, each with its own activations).
    size_t need = rows * (2 * C + 2 * std::max(qd, C) + 2 * std::max(kvd, C) + 2 * std::max(I, qd)) * (size_t)std::max(1, nstreams);
    if (need > act_capacity_) {
        if (act_) backend_->release(act_);
        act_ = nullptr;
        act_ = static_cast<float*>(backend_->alloc(need * sizeof(float)));
        act_capacity_ = need;
    }
    size_t hneed = (size_t)N * C;
    if (hneed > h_capacity_) {
        for (float*& h : hbuf_) {
            backend_->release(h);
            h = nullptr;
        }
        hbuf_.clear();
        h_capacity_ = hneed;
    }
    while ((int)hbuf_.size() < nstreams) hbuf_.push_back(static_cast<float*>(backend_->alloc(h_capacity_ * sizeof(float))));
    // z and the working copy hold the largest group of tensors one kernel call reads.
    size_t unit_need = 0;
    for (const Unit& u : model_->units)
        for (const auto& group : op_groups()) {
            size_t n = 0;
            for (const char* role : group) {
                int ti = role_tensor(u, role);
                if (ti >= 0) n += pad16(model_->tensors[(size_t)ti].numel);
            }
            unit_need = std::max(unit_need, n);
        }
    if (unit_need > unit_capacity_) {
        if (zbuf_) backend_->release(zbuf_);
        if (wbuf_) backend_->release(wbuf_);
        zbuf_ = wbuf_ = nullptr;
        zbuf_ = static_cast<float*>(backend_->alloc(unit_need * sizeof(float)));
        wbuf_ = static_cast<float*>(backend_->alloc(unit_need * sizeof(float)));
        unit_capacity_ = unit_need;
    }
    if ((size_t)std::max(1, M) > lp_capacity_) {
        if (lp_) backend_->release(lp_);
        lp_ = nullptr;
        lp_capacity_ = (size_t)std::max(1, M);
        lp_ = static_cast<float*>(backend_->alloc(lp_capacity_ * sizeof(float)));
    }
}


// A role's tensor in a unit; a tied head reads the token embedding as "lm_head". -1: absent.
int Engine::role_tensor(const Unit& unit, const char* role) const {
    int i = unit.find(role);
    if (i < 0 && unit.kind == UnitKind::Head && model_->config.tied && std::strcmp(role, "lm_head") == 0)
        i = model_->units.front().find("tok");
    return i;
}

// Runs fn(si, w) for every stream, w[i] the tensor of roles[i] as that stream computes with it
// (nullptr when the unit has no such role): the tensor itself for an unperturbed stream,
// theta + scale * z in the working copy otherwise. z is drawn once per seed for the group and
// shared by the streams of that seed (+eps and -eps).
void Engine::with_weights(const Unit& unit, const std::vector<const char*>& roles, std::vector<Stream>& streams, int noise,
                          PhaseTimes& times, const std::function<void(size_t, const float* const*)>& fn) {
    const size_t nr = roles.size();
    int ids[4] = {-1, -1, -1, -1};
    size_t offs[4] = {0, 0, 0, 0};
    size_t off = 0;
    for (size_t i = 0; i < nr; i++) {
        ids[i] = role_tensor(unit, roles[i]);
        if (ids[i] < 0) continue;
        offs[i] = off;
        off += pad16(model_->tensors[(size_t)ids[i]].numel);
    }
    const float* w[4] = {nullptr, nullptr, nullptr, nullptr};
    for (size_t si = 0; si < streams.size(); si++) {
        if (si == 0 || streams[si].seed != streams[si - 1].seed) {
            bool perturbed = false;
            for (size_t sj = si; sj < streams.size() && streams[sj].seed == streams[si].seed; sj++) perturbed |= streams[sj].scale != 0.f;
            if (perturbed) {
                auto t0 = Clock::now();
                for (size_t i = 0; i < nr; i++) {
                    if (ids[i] < 0) continue;
                    const Tensor& t = model_->tensors[(size_t)ids[i]];
                    backend_->noise_fill(zbuf_ + offs[i], t.numel, streams[si].seed, t.id, noise, 0);
                }
                times.noise_ms += ms_since(t0);
            }
        }
        for (size_t i = 0; i < nr; i++) {
            if (ids[i] < 0) {
                w[i] = nullptr;
                continue;
            }
            const Tensor& t = model_->tensors[(size_t)ids[i]];
            if (t.device16) {  // staged in bf16/fp16: widened or perturbed into the working copy
                if (streams[si].scale == 0.f)
                    backend_->widen(wbuf_ + offs[i], t.device16, t.numel, dtype_);
                else
                    backend_->perturb_packed(wbuf_ + offs[i], t.device16, zbuf_ + offs[i], streams[si].scale, t.numel, dtype_);
                w[i] = wbuf_ + offs[i];
            } else if (streams[si].scale == 0.f) {
                w[i] = t.device;
            } else {
                backend_->perturb(wbuf_ + offs[i], t.device, zbuf_ + offs[i], streams[si].scale, t.numel);
                w[i] = wbuf_ + offs[i];
            }
        }
        fn(si, w);
    }
}

// One block for every stream in lockstep, kernel call by kernel call (so that each weight
// group is perturbed once per stream right before it is used). Each stream has its own
// activations; the hidden states h of each stream are updated in place.
void Engine::block_forward(const Unit& unit, std::vector<Stream>& streams, int noise, const Prepared& p, PhaseTimes& times) {
    const ModelConfig& c = model_->config;
    Backend& be = *backend_;
    const int N = p.N, C = c.hidden, I = c.intermediate, HD = c.head_dim;
    const int qd = c.heads * HD, kvd = c.kv_heads * HD;
    const size_t Cs = (size_t)N * C, Qs = (size_t)N * std::max(qd, C), Ks = (size_t)N * std::max(kvd, C);
    const size_t per_stream = act_capacity_ / std::max<size_t>(1, streams.size());
    struct Acts {
        float *a, *tmp, *q, *att, *k, *v, *m1, *m2;
    };
    auto acts = [&](size_t si) {
        Acts x;
        x.a = act_ + si * per_stream;
        x.tmp = x.a + Cs;
        x.q = x.tmp + Cs;
        x.att = x.q + Qs;
        x.k = x.att + Qs;
        x.v = x.k + Ks;
        x.m1 = x.v + Ks;
        x.m2 = x.m1 + (size_t)N * std::max(I, qd);
        return x;
    };
    auto tr = [&](const char* role) {
        int i = unit.find(role);
        return i >= 0 && model_->tensors[(size_t)i].transposed;
    };
    auto norm = [&](const char* wr, const char* br) {
        with_weights(unit, {wr, br}, streams, noise, times, [&](size_t si, const float* const* w) {
            Acts x = acts(si);
            if (c.norm == NormKind::RmsNorm)
                be.rmsnorm(x.a, streams[si].h, w[0], N, C, c.norm_eps);
            else
                be.layernorm(x.a, streams[si].h, w[0], w[1], N, C, c.norm_eps);
        });
    };
    auto linear = [&](const char* wr, const char* br, float* Acts::*out, float* Acts::*in, int In, int Out, bool transposed) {
        with_weights(unit, {wr, br}, streams, noise, times, [&](size_t si, const float* const* w) {
            Acts x = acts(si);
            be.linear(x.*out, x.*in, w[0], w[1], N, In, Out, transposed);
        });
    };
    auto each = [&](const std::function<void(size_t, Acts&)>& f) {
        for (size_t si = 0; si < streams.size(); si++) {
            Acts x = acts(si);
            f(si, x);
        }
    };

    norm("attn_norm_w", "attn_norm_b");
    AttentionShape s{c.heads, c.kv_heads, HD, qd, kvd, kvd, 1.0f / sqrtf((float)HD), c.sliding_window};
    if (unit.find("qkv_w") >= 0) {
        // The fused [N, 3C] projection spans the contiguous q, att and k buffers; attention reads
        // it in place and writes into m1, which is free until the MLP.
        linear("qkv_w", "qkv_b", &Acts::q, &Acts::a, C, 3 * C, tr("qkv_w"));
        AttentionShape s3 = s;
        s3.ldq = s3.ldk = s3.ldv = 3 * C;
        each([&](size_t, Acts& x) { be.attention(x.m1, x.q, x.q + C, x.q + 2 * C, s3, p.seq_start, p.nseq); });
        linear("o_w", "o_b", &Acts::tmp, &Acts::m1, qd, C, tr("o_w"));
    } else {
        linear("q_w", "q_b", &Acts::q, &Acts::a, C, qd, false);
        linear("k_w", "k_b", &Acts::k, &Acts::a, C, kvd, false);
        linear("v_w", "v_b", &Acts::v, &Acts::a, C, kvd, false);
        each([&](size_t, Acts& x) {
            if (c.rope_theta > 0.f) {
                be.rope(x.q, qd, c.heads, HD, p.positions, N, inv_freq_dev_);
                be.rope(x.k, kvd, c.kv_heads, HD, p.positions, N, inv_freq_dev_);
            }
            be.attention(x.att, x.q, x.k, x.v, s, p.seq_start, p.nseq);
        });
        linear("o_w", "o_b", &Acts::tmp, &Acts::att, qd, C, false);
    }
    each([&](size_t si, Acts& x) { be.add(streams[si].h, x.tmp, Cs); });

    norm("mlp_norm_w", "mlp_norm_b");
    if (unit.find("gate_w") >= 0) {
        linear("gate_w", "gate_b", &Acts::m1, &Acts::a, C, I, false);
        linear("up_w", "up_b", &Acts::m2, &Acts::a, C, I, false);
        each([&](size_t, Acts& x) { be.gated_silu(x.m1, x.m2, (size_t)N * I); });
        linear("down_w", "down_b", &Acts::tmp, &Acts::m1, I, C, false);
    } else {
        linear("fc1_w", "fc1_b", &Acts::m1, &Acts::a, C, I, tr("fc1_w"));
        each([&](size_t, Acts& x) { be.activation(x.m1, (size_t)N * I, (Act)c.activation); });
        linear("fc2_w", "fc2_b", &Acts::tmp, &Acts::m1, I, C, tr("fc2_w"));
    }
    each([&](size_t si, Acts& x) { be.add(streams[si].h, x.tmp, Cs); });
}

void Engine::run_forward(const Batch& batch, const Prepared& p, std::vector<Stream>& streams, int noise,
                         const std::atomic<bool>* cancel, PhaseTimes& times) {
    const ModelConfig& c = model_->config;
    Backend& be = *backend_;
    const int N = p.N, C = c.hidden;
    (void)batch;

    // Embeddings: only the rows in use are read, perturbed on the fly.
    auto t0 = Clock::now();
    const Unit& embed = model_->units.front();
    const Tensor& tok = model_->tensors[(size_t)embed.find("tok")];
    int pos_i = embed.find("pos");
    const Tensor* pos = pos_i >= 0 ? &model_->tensors[(size_t)pos_i] : nullptr;
    for (auto& s : streams) {
        NoiseSpec tn{s.seed, tok.id, noise, s.scale};
        NoiseSpec pn{s.seed, pos ? pos->id : 0u, noise, s.scale};
        be.embed(s.h, tok.device, p.ids, N, C, tn, pos ? pos->device : nullptr, p.posidx, pn);
    }
    times.forward_ms += ms_since(t0);

    // Every stream runs through a unit while it is resident (in lockstep, kernel by kernel):
    // the streams of one seed share its noise, and a streamed unit is visited once per pass
    // whatever q is. Noise time is its own phase.
    auto timed = [&](double& phase_ms, const std::function<void()>& f) {
        double noise0 = times.noise_ms;
        auto t0 = Clock::now();
        f();
        phase_ms += ms_since(t0) - (times.noise_ms - noise0);
    };

    // SSD blocks are read and verified (and replayed, when updated at home) up to
    // `prefetch_` units ahead on their own threads while earlier blocks compute; with two
    // staging slots the next streamed unit's upload is queued before this one computes.
    std::vector<size_t> streamed, ssd_units;
    for (size_t ui = 1; ui + 1 < model_->units.size(); ui++) {
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
            be.host_wait(prefetch_done_[b]);  // its last upload has left it
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
    std::vector<size_t> staged_buf;  // per staged unit, its prefetch buffer or SIZE_MAX
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
        times.io_ms += ms_since(tr);
    }
    for (size_t ui = 1; ui + 1 < model_->units.size(); ui++) {
        check_cancel(cancel);
        const Unit& unit = model_->units[ui];
        bool is_streamed = tiers_[ui].home != Home::Device;
        if (is_streamed) {
            auto tr = Clock::now();
            if (!ahead) stage_next();
            cur = next;
            use_staged(cur);
            // Staging the next unit without read-ahead reuses io_: this unit's write-back leaves it first.
            if (ahead && cur.prefetch_buf < 0) finish_write_back(cur);
            if (ahead) stage_next();
            times.io_ms += ms_since(tr);
        }
        timed(times.forward_ms, [&] { block_forward(unit, streams, noise, p, times); });
        if (is_streamed) {
            release_residency(cur);
            if (cur.prefetch_buf >= 0) {
                free_bufs.push_back((size_t)cur.prefetch_buf);
                launch();
            }
        }
    }

    check_cancel(cancel);
    const Unit& head = model_->units.back();
    timed(times.head_ms, [&] {
        with_weights(head, {"norm_w", "norm_b", "lm_head"}, streams, noise, times, [&](size_t si, const float* const* w) {
            float* x = act_;
            float* xn = act_ + (size_t)p.M * C;
            be.gather_rows(x, streams[si].h, p.rows, p.M, C);
            if (c.norm == NormKind::RmsNorm)
                be.rmsnorm(xn, x, w[0], p.M, C, c.norm_eps);
            else
                be.layernorm(xn, x, w[0], w[1], p.M, C, c.norm_eps);
            be.token_logprobs(lp_, xn, w[2], p.targets, p.M, C, c.vocab);
            streams[si].logprob.resize((size_t)p.M);
            be.download(streams[si].logprob.data(), lp_, sizeof(float) * (size_t)p.M);
        });
    });
    auto ts = Clock::now();
    be.synchronize();
    times.head_ms += ms_since(ts);
}

void Engine::losses(const Batch& b, const std::vector<float>& lp, std::vector<double>& example_loss,
                    std::vector<int32_t>& correct, std::vector<double>& cand, std::vector<int32_t>& scored) const {
    int nseq = b.num_sequences();
    cand.assign((size_t)nseq, 0.0);
    std::vector<int32_t> seq_tokens((size_t)nseq);
    size_t row = 0;
    std::vector<float> seq_sum((size_t)nseq);
    for (int s = 0; s < nseq; s++) {
        int n = 0;
        float sum = 0.f;
        for (int k = b.first_span(s); k < b.end_span(s); k++)
            for (int t = b.score_start[k]; t < b.score_end[k]; t++, n++) sum += lp[row++];
        cand[(size_t)s] = (double)(sum / (float)n);
        seq_sum[(size_t)s] = sum;
        seq_tokens[(size_t)s] = n;
    }
    int ne = b.num_examples();
    example_loss.assign((size_t)ne, 0.0);
    correct.assign((size_t)ne, -1);
    scored.assign((size_t)ne, 0);
    for (int e = 0; e < ne; e++) {
        int s0 = b.example_start[e], s1 = b.example_start[e + 1];
        for (int s = s0; s < s1; s++) scored[(size_t)e] += seq_tokens[(size_t)s];
        if (b.example_kind[e] == EXAMPLE_LM) {
            // Mean NLL over every scored token of the example's sequences (one sequence: -cand, bit for bit).
            float sum = 0.f;
            for (int s = s0; s < s1; s++) sum += seq_sum[(size_t)s];
            example_loss[(size_t)e] = -(double)(sum / (float)scored[(size_t)e]);
        } else {
            double mx = -INFINITY;
            int best = -1;
            for (int s = s0; s < s1; s++) {
                if (cand[(size_t)s] > mx) {
                    mx = cand[(size_t)s];
                    best = s - s0;
                }
            }
            double sum = 0;
            for (int s = s0; s < s1; s++) sum += std::exp(cand[(size_t)s] - mx);
            example_loss[(size_t)e] = mx + std::log(sum) - cand[(size_t)(s0 + b.label[e])];
            correct[(size_t)e] = best == b.label[e] ? 1 : 0;
        }
    }
}

namespace {
double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / (double)v.size();
}
}  // namespace

void Engine::prepare(const Batch& batch, Prepared& p) {
    const ModelConfig& c = model_->config;
    p.N = batch.num_tokens();
    p.nseq = batch.num_sequences();
    std::vector<int32_t> posidx((size_t)p.N), positions((size_t)p.N), rows, targets;
    for (int s = 0; s < p.nseq; s++) {
        int st = batch.seq_start[s], T = batch.seq_start[s + 1] - st;
        for (int t = 0; t < T; t++) {
            positions[(size_t)(st + t)] = t;
            posidx[(size_t)(st + t)] = t + c.position_offset;
        }
        // Token t of the span is predicted by the hidden state at t - 1.
        for (int k = batch.first_span(s); k < batch.end_span(s); k++)
            for (int t = batch.score_start[k]; t < batch.score_end[k]; t++) {
                rows.push_back(st + t - 1);
                targets.push_back(batch.tokens[(size_t)(st + t)]);
            }
    }
    p.M = (int)rows.size();
    // One arena for the six index arrays, grown on demand: no allocation (and on a GPU
    // no implicit synchronisation from freeing) per step.
    std::vector<int32_t> all;
    auto pad = [](size_t n) { return (n + 15) / 16 * 16; };
    size_t offs[6];
    const std::vector<int32_t>* parts[6] = {&batch.tokens, &posidx, &positions, &batch.seq_start, &rows, &targets};
    for (int i = 0; i < 6; i++) {
        offs[i] = all.size();
        all.insert(all.end(), parts[i]->begin(), parts[i]->end());
        all.resize(pad(all.size()), 0);
    }
    if (all.size() > ints_capacity_) {
        if (ints_) backend_->release(ints_);
        ints_ = nullptr;
        ints_ = static_cast<int32_t*>(backend_->alloc(all.size() * sizeof(int32_t)));
        ints_capacity_ = all.size();
    }
    backend_->upload(ints_, all.data(), all.size() * sizeof(int32_t));
    p.ids = ints_ + offs[0];
    p.posidx = ints_ + offs[1];
    p.positions = ints_ + offs[2];
    p.seq_start = ints_ + offs[3];
    p.rows = ints_ + offs[4];
    p.targets = ints_ + offs[5];
}

StepResult Engine::step(const Batch& batch, const StepParams& params, const std::atomic<bool>* cancel, const StepShare* share) {
    auto t_start = Clock::now();
    validate(batch);
    if (params.q < 1) throw std::runtime_error("q must be at least 1");
    if (params.q > 64) throw std::runtime_error("q is at most 64 (each perturbation keeps two hidden-state buffers)");
    if (!(params.eps > 0.f)) throw std::runtime_error("eps must be positive");
    const int first = share ? share->first : 0, count = share ? share->count : params.q;
    if (first < 0 || count < 1 || first + count > params.q)
        throw std::runtime_error("a shared step computes perturbations " + std::to_string(first) + ".." +
                                 std::to_string(first + count - 1) + ", outside the " + std::to_string(params.q) + " of the step");
    Prepared prep;
    prepare(batch, prep);
    ensure_buffers(prep.N, prep.M, 2 * count);

    // All 2 x count perturbed streams share one pass over the units.
    StepResult res;
    std::vector<Stream> streams;
    for (int j = 0; j < params.q; j++) res.seeds.push_back(step_seed(params.run_seed, params.step, (uint64_t)j));
    for (int j = first; j < first + count; j++) {
        uint64_t seed = res.seeds[(size_t)j];
        streams.push_back({seed, params.eps, hbuf_[(size_t)(2 * (j - first))], {}});
        streams.push_back({seed, -params.eps, hbuf_[(size_t)(2 * (j - first) + 1)], {}});
    }
    run_forward(batch, prep, streams, params.noise, cancel, res.times);
    // Per-example losses of each computed perturbation; shared: exchanged for every perturbation
    // on every example of the global batch.
    std::vector<std::vector<double>> plus((size_t)count), minus((size_t)count);
    for (int k = 0; k < count; k++) {
        std::vector<double> cand;
        std::vector<int32_t> corr, scored;
        losses(batch, streams[(size_t)(2 * k)].logprob, plus[(size_t)k], corr, cand, scored);
        losses(batch, streams[(size_t)(2 * k + 1)].logprob, minus[(size_t)k], corr, cand, scored);
    }
    if (share && share->exchange) {
        PhaseTimes so_far = res.times;
        so_far.total_ms = ms_since(t_start);
        auto tx = Clock::now();
        share->exchange(plus, minus, so_far);
        res.times.exchange_ms = ms_since(tx);
        if ((int)plus.size() != params.q || (int)minus.size() != params.q)
            throw std::runtime_error("the exchange returned losses of " + std::to_string(plus.size()) + " perturbations; the step has " +
                                     std::to_string(params.q));
    }
    for (int j = 0; j < params.q; j++) {
        double Lp = mean(plus[(size_t)j]), Lm = mean(minus[(size_t)j]);
        double g = (Lp - Lm) / (2.0 * (double)params.eps);
        res.loss_plus.push_back(Lp);
        res.loss_minus.push_back(Lm);
        res.projected_grad.push_back(g);
        if (!std::isfinite(Lp) || !std::isfinite(Lm) || !std::isfinite(g)) res.skipped = true;
        res.loss += (Lp + Lm) / 2.0 / params.q;
    }
    check_cancel(cancel);

    if (!res.skipped) {
        auto tu = Clock::now();
        std::vector<UpdateTerm> terms;
        for (int j = 0; j < params.q; j++)
            terms.push_back({res.seeds[(size_t)j], (float)((double)params.lr * res.projected_grad[(size_t)j] / params.q)});
        float decay = params.lr * params.weight_decay;
        // Each unit is updated where its master lives; SSD units queue the update and
        // replay it on their next read (lazy write-back); units updated on the device
        // queue it for their next visit there.
        for (size_t ui = 0; ui < tiers_.size(); ui++) {
            UnitTier& tier = tiers_[ui];
            if (tier.home == Home::Ssd || tier.device_update) {
                tier.pending.push_back({terms, decay, params.noise});
                continue;
            }
            Backend* be = tier.home == Home::Cpu ? host_ : backend_.get();
            for (auto& [ti, off] : tier.layout) {
                const Tensor& t = model_->tensors[(size_t)ti];
                bool packed = tier.packed != nullptr || t.device16 != nullptr;
                void* theta = tier.packed ? static_cast<void*>(static_cast<uint16_t*>(tier.packed->data()) + off)
                              : t.device16 ? static_cast<void*>(t.device16)
                              : tier.home == Home::Cpu ? static_cast<void*>(t.master) : static_cast<void*>(t.device);
                update_at(*be, t, theta, packed, terms, decay, params.noise);
            }
        }
        backend_->synchronize();
        if (host_ != backend_.get()) host_->synchronize();
        res.times.update_ms += ms_since(tu);
    }
    res.times.total_ms = ms_since(t_start);
    return res;
}

ScoreResult Engine::score(const Batch& batch, const std::atomic<bool>* cancel) {
    auto t_start = Clock::now();
    validate(batch);
    Prepared prep;
    prepare(batch, prep);
    ensure_buffers(prep.N, prep.M, 1);
    std::vector<Stream> streams = {{0, 0.f, hbuf_[0], {}}};
    ScoreResult res;
    run_forward(batch, prep, streams, 0, cancel, res.times);
    losses(batch, streams[0].logprob, res.example_loss, res.correct, res.candidate_scores, res.scored_tokens);
    res.token_logprobs = std::move(streams[0].logprob);
    res.loss = mean(res.example_loss);
    res.times.total_ms = ms_since(t_start);
    return res;
}

}  // namespace spw
