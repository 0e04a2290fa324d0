// Where every unit's master lives between its visits to the compute device,
// and how it gets there and back (docs/TIERED-STORE.md): device, CPU and SSD
// homes; the staging slots streamed blocks are uploaded into; SSD read-ahead on
// its own threads; updates applied at home, replayed from the SSD, or applied
// on the device and written back; pinned host buffers and the spill files.
// The engine owns one and runs its passes through it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "spillway/backend.h"
#include "spillway/model.h"
#include "spillway/tiers.h"

namespace spw {

class SpillFile;
class AlignedBuffer;

class Residency {
public:
    // Places every unit per `o`, moves SSD-homed masters to the spill files and uploads the
    // device-homed ones. Throws with what is wrong (placement, spill folder, memory).
    Residency(Backend& be, Model& model, const TierOptions& o);
    ~Residency();
    Residency(const Residency&) = delete;
    Residency& operator=(const Residency&) = delete;

    int master_dtype() const { return dtype_; }

    // One pass over the blocks (units 1 .. n-2) in order: `visit(unit)` queues the block's
    // compute once its tensors' device pointers point at its data (resident, or staged in a
    // slot). Streamed blocks are read ahead and uploaded beside the compute; the time the
    // compute path waits for them is added to io_ms. An exception from visit ends the pass.
    void pass(const std::function<void(size_t unit)>& visit, double& io_ms);

    // A step's update of every unit, applied where its master lives (or queued: SSD replay,
    // device updates at the next visit); returns once every update is done.
    void update(const std::vector<UpdateTerm>& terms, float decay, int noise);

    // The current float32 values of a tensor (t.numel floats into out), wherever it lives.
    void read_tensor(const Tensor& t, float* out);

    TierStats stats() const;

private:
    struct Pending {
        std::vector<UpdateTerm> terms;
        float decay;
        int noise;
    };
    struct UnitTier {
        Home home = Home::Device;
        std::vector<std::pair<int, size_t>> layout;  // (tensor, float offset) inside the unit's slot
        size_t floats = 0;                           // slot size in floats
        uint64_t offset = 0;                         // SSD: byte offset in the spill file
        uint64_t checksum = 0;                       // SSD: of the slot as last written
        std::vector<Pending> pending;                // updates not yet applied to the stored copy
        int file = 0;                                // SSD: which spill file (striping)
        std::shared_ptr<AlignedBuffer> packed;       // CPU home with bf16/fp16 masters: the unit in that format
        bool device_update = false;                  // applied on the device when staged, then written back
        // Sliced (TierOptions::slices): the CPU home as the slot holds it (stored format, same
        // layout), in memory the machine's ranks share; this rank moves only its slice of it.
        char* shared = nullptr;
    };
    // A staged unit: where its data came from and what must finish before that host memory is reused.
    struct Staged {
        size_t unit = 0;
        int slot = 0;
        AlignedBuffer* buf = nullptr;  // SSD: the host copy it was uploaded from
        int prefetch_buf = -1;         // which prefetch buffer that is, -1: io_
        bool ssd_write = false;        // written back from the device: write buf to the SSD once wb_done_ passes
    };

    void place(const TierOptions& o);
    void upload_resident();
    void release();
    // Queues the upload of a streamed unit into the next staging slot; an SSD unit's
    // data comes from `loaded` (a prefetched, verified copy) or is read now into io_.
    // `source_done` is recorded on the copy queue once the upload has left the host copy.
    Staged stage_unit(size_t ui, AlignedBuffer* loaded, Backend::Event* source_done);
    // Makes the compute queue wait for a staged unit, applies its pending updates on the
    // device when it is updated there (writing it back home), and points its tensors at the slot.
    void use_staged(Staged& s);
    // Called once the unit's compute is queued: frees its slot for the next upload and
    // finishes an SSD write-back (the device-to-host copy ran beside the compute).
    void release_residency(Staged& s);
    void finish_write_back(Staged& s);
    void load_ssd_unit(size_t ui, void* host, Backend& replay, bool replay_pending = true);
    void write_ssd_unit(size_t ui, const void* host);
    void flush_cpu_pending(size_t ui);
    void place_sliced(size_t ui);
    // Sliced units: the bytes of each rank's slice (the slot holds slice_ranks of them).
    size_t slice_bytes(const UnitTier& tier) const;
    // One tensor's ZO update on `be`: theta is float32, or (bf16/fp16 masters) packed when `packed`.
    void update_at(Backend& be, const Tensor& t, void* theta, bool packed, const std::vector<UpdateTerm>& terms,
                   float decay, int noise);

    Backend& be_;
    Model& model_;
    std::vector<UnitTier> tiers_;
    std::vector<int> tensor_unit_;
    std::vector<std::unique_ptr<SpillFile>> spills_;
    std::unique_ptr<AlignedBuffer> io_;
    Backend::Event* io_done_ = nullptr;       // the last upload from io_
    std::vector<float*> stage_;               // staging slots
    std::vector<uint16_t*> raw_;              // per slot: the unit as uploaded in bf16/fp16, before widening
    std::vector<Backend::Event*> slot_ready_, slot_free_, slot_wb_;  // per slot: uploaded, computed, written back
    int next_slot_ = 0;
    int stage_count_ = 0;                     // staging slots (stage_ in float32, or raw_ in bf16/fp16)
    size_t stage_floats_ = 0;
    int write_back_every_ = 1;
    int prefetch_ = 2;
    std::vector<std::unique_ptr<Backend>> replays_;  // per prefetch buffer: replays pending updates on its thread
    Backend::Event* wb_done_ = nullptr;       // the last write-back copy to the host
    Backend::Event* updated_ = nullptr;       // a device update done, before its copy home
    std::vector<std::unique_ptr<AlignedBuffer>> prefetch_bufs_;
    std::vector<Backend::Event*> prefetch_done_;  // per prefetch buffer: its last upload
    std::vector<void*> pinned_;                   // host memory registered with the backend
    Backend* host_ = nullptr;                 // updates at home run here
    std::unique_ptr<Backend> host_owned_;
    uint64_t h2d_bytes_ = 0;
    uint64_t d2h_bytes_ = 0;
    int dtype_ = 0;                    // MasterDtype
    size_t ebytes_ = 4;                // bytes per stored master element of a streamed unit
    std::vector<uint16_t*> resident16_;  // resident blocks' bf16/fp16 copies on the device
    bool resident_ = false;            // masters uploaded to device memory (Tensor::device != master)
    std::shared_ptr<SliceGroup> slices_;  // the sliced transfer's group (null: none)
};

}  // namespace spw
