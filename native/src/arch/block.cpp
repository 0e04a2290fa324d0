#include "block.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>

#include "params.h"

namespace spw {

namespace {

size_t pad16(size_t n) { return (n + 15) / 16 * 16; }

using Clock = std::chrono::steady_clock;

}  // namespace

void norm_rows(Backend& be, const ModelConfig& c, float* out, const float* in, const float* w, const float* b,
               int rows, int width) {
    switch (c.norm) {
        case NormKind::LayerNorm: be.layernorm(out, in, w, b, rows, width, c.norm_eps); return;
        case NormKind::RmsNorm: be.rmsnorm(out, in, w, rows, width, c.norm_eps); return;
        case NormKind::RmsNormPlus1: be.rmsnorm_offset(out, in, w, 1.f, rows, width, c.norm_eps); return;
    }
}

size_t acts_floats(const ModelConfig& c, size_t rows) {
    // Embeddings wider than the model (OPTConfig allows it) widen every row, so that the embedding
    // step's and the head's [rows, E] buffers fit in one stream's share.
    size_t C = std::max((size_t)c.hidden, (size_t)c.embed_dim), I = (size_t)c.intermediate;
    size_t qd = (size_t)c.heads * c.head_dim, kvd = (size_t)c.kv_heads * c.head_dim;
    return rows * (2 * C + 2 * std::max(qd, C) + 2 * std::max(kvd, C) + 2 * std::max(I, qd));
}

// ---- working copies ----

WorkingCopies::~WorkingCopies() {
    if (z_) be_.release(z_);
    if (w_) be_.release(w_);
    if (w_minus_) be_.release(w_minus_);
    if (chunks_) be_.release(chunks_);
}

size_t WorkingCopies::largest_group(const Model& m, bool head_chunked) {
    auto floats = [&](std::initializer_list<int> ids) {
        size_t n = 0;
        for (int ti : ids)
            if (ti >= 0) n += pad16(m.tensors[(size_t)ti].numel);
        return n;
    };
    return std::max({floats({m.params.head.norm.w, m.params.head.norm.b, m.params.head.proj, head_chunked ? -1 : m.params.head.lm_head}),
                     floats({m.params.embed.proj}), largest_block_group(m)});
}

size_t WorkingCopies::largest_block_group(const Model& m) {
    size_t most = 0;
    for (const BlockParams& b : m.params.blocks)
        for (const BlockField& f : block_fields()) {
            size_t n = 0;
            for (int ti : {(b.*f.field).w, (b.*f.field).b})
                if (ti >= 0) n += pad16(m.tensors[(size_t)ti].numel);
            most = std::max(most, n);
        }
    return most;
}

size_t WorkingCopies::largest_adapted_group(const Model& m, const AdapterHook& adapters, bool rows_merged) {
    size_t most = 0;
    for (const BlockParams& b : m.params.blocks)
        for (const BlockField& f : block_fields()) {
            const int w = (b.*f.field).w, bias = (b.*f.field).b;
            if (w < 0 || adapters.adapter_of(w) < 0) continue;
            size_t n = pad16(m.tensors[(size_t)w].numel);
            if (bias >= 0) n += pad16(m.tensors[(size_t)bias].numel);
            most = std::max(most, n);
        }
    // Trainable tokens adapt the embedding and the head: their groups as with() lays them out.
    if (rows_merged) return most;
    auto group = [&](std::initializer_list<int> ids) {
        size_t n = 0;
        bool adapted = false;
        for (int ti : ids)
            if (ti >= 0) {
                n += pad16(m.tensors[(size_t)ti].numel);
                adapted |= adapters.adapter_of(ti) >= 0;
            }
        return adapted ? n : 0;
    };
    most = std::max(most, group({m.params.embed.tok}));
    most = std::max(most, group({m.params.head.norm.w, m.params.head.norm.b, m.params.head.proj, m.params.head.lm_head}));
    return most;
}

void WorkingCopies::reserve(size_t floats, size_t z_floats) {
    if (z_floats == SIZE_MAX) z_floats = floats;
    if (floats > capacity_) {
        if (w_) be_.release(w_);
        w_ = nullptr;
        w_ = static_cast<float*>(be_.alloc(floats * sizeof(float)));
        capacity_ = floats;
    }
    if (z_floats > z_capacity_) {
        if (z_) be_.release(z_);
        z_ = nullptr;
        z_ = static_cast<float*>(be_.alloc(z_floats * sizeof(float)));
        z_capacity_ = z_floats;
    }
}

void WorkingCopies::reserve_pairs(size_t floats) {
    if (floats <= pair_capacity_) return;
    if (w_minus_) be_.release(w_minus_);
    w_minus_ = nullptr;
    w_minus_ = static_cast<float*>(be_.alloc(floats * sizeof(float)));
    pair_capacity_ = floats;
}

void WorkingCopies::reserve_head_chunks(size_t floats) {
    if (floats <= chunks_capacity_) return;
    if (chunks_) be_.release(chunks_);
    chunks_ = nullptr;
    chunks_ = static_cast<float*>(be_.alloc(floats * sizeof(float)));
    chunks_capacity_ = floats;
}

// Where each tensor of the group ids[0..n) starts in a working copy (each padded to 16 floats);
// returns the floats they take.
static size_t group_offsets(const std::vector<Tensor>& tensors, const int* ids, int n, size_t (&offs)[4]) {
    size_t off = 0;
    for (int i = 0; i < 4; i++) offs[i] = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0) continue;
        offs[i] = off;
        off += pad16(tensors[(size_t)ids[i]].numel);
    }
    return off;
}

bool WorkingCopies::pairable(const std::vector<Tensor>& tensors, const int* ids, int n, const std::vector<Stream>& streams) const {
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0) continue;
        const Tensor& t = tensors[(size_t)ids[i]];
        if (!t.device) return false;  // held in bf16/fp16: widened by with()
        // Frozen, masked (sparse) or adapted tensors: with() perturbs only what trains.
        if (t.frozen || t.mask_below != INFINITY || (adapters_ && adapters_->adapter_of(ids[i]) >= 0)) return false;
    }
    if (streams.empty() || streams.size() % 2) return false;
    for (size_t si = 0; si < streams.size(); si += 2)
        if (streams[si].seed != streams[si + 1].seed || streams[si].scale == 0.f || streams[si + 1].scale != -streams[si].scale)
            return false;
    return true;
}

bool WorkingCopies::with_pairs(const std::vector<Tensor>& tensors, const int* ids, int n, const std::vector<Stream>& streams,
                               int noise, double& noise_ms,
                               const std::function<void(size_t, const float* const*, const float* const*)>& fn) {
    if (!pairable(tensors, ids, n, streams)) return false;
    size_t offs[4];
    const size_t off = group_offsets(tensors, ids, n, offs);
    if (off > pair_capacity_ || off > capacity_) return false;
    const float* plus[4] = {nullptr, nullptr, nullptr, nullptr};
    const float* minus[4] = {nullptr, nullptr, nullptr, nullptr};
    for (size_t si = 0; si < streams.size(); si += 2) {
        auto t0 = Clock::now();
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0) continue;
            const Tensor& t = tensors[(size_t)ids[i]];
            be_.perturb_pair(w_ + offs[i], w_minus_ + offs[i], t.device, t.numel, streams[si].seed, t.id, noise, streams[si].scale);
            plus[i] = w_ + offs[i];
            minus[i] = w_minus_ + offs[i];
        }
        noise_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        fn(si, plus, minus);
    }
    return true;
}

void WorkingCopies::with(const std::vector<Tensor>& tensors, const int* ids, int n, const std::vector<Stream>& streams,
                         int noise, double& noise_ms, const std::function<void(size_t, const float* const*)>& fn) {
    size_t offs[4];
    group_offsets(tensors, ids, n, offs);
    int adapter[4] = {-1, -1, -1, -1};
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && adapters_) adapter[i] = adapters_->adapter_of(ids[i]);
    const float* w[4] = {nullptr, nullptr, nullptr, nullptr};
    for (size_t si = 0; si < streams.size(); si++) {
        if (draws_noise_at(streams, si)) {
            auto t0 = Clock::now();
            for (int i = 0; i < n; i++) {
                if (ids[i] < 0) continue;
                if (adapter[i] >= 0) adapters_->draw(adapter[i], streams[si].seed, noise);
                const Tensor& t = tensors[(size_t)ids[i]];
                if (t.frozen) continue;
                be_.noise_fill(z_ + offs[i], t.numel, streams[si].seed, t.id, noise, 0);
                if (t.mask_below == INFINITY) continue;
                // Sparse: the mask is read from the master (widened first when held in 16 bits).
                const float* theta = t.device;
                if (t.device16) {
                    be_.widen(w_ + offs[i], t.device16, t.numel, dtype_);
                    theta = w_ + offs[i];
                }
                be_.mask_small(z_ + offs[i], theta, t.mask_below, t.numel);
            }
            noise_ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        }
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0) {
                w[i] = nullptr;
                continue;
            }
            const Tensor& t = tensors[(size_t)ids[i]];
            if (adapter[i] >= 0) {  // the frozen base plus the adapter's delta; its z_ is free scratch
                adapters_->merge(adapter[i], streams[si].scale, t, dtype_, w_ + offs[i], z_ + offs[i]);
                w[i] = w_ + offs[i];
                continue;
            }
            const float scale = t.frozen ? 0.f : streams[si].scale;
            if (t.device16) {  // held in bf16/fp16: widened or perturbed into the working copy
                if (scale == 0.f)
                    be_.widen(w_ + offs[i], t.device16, t.numel, dtype_);
                else
                    be_.perturb_packed(w_ + offs[i], t.device16, z_ + offs[i], scale, t.numel, dtype_);
                w[i] = w_ + offs[i];
            } else if (scale == 0.f) {
                w[i] = t.device;
            } else {
                be_.perturb(w_ + offs[i], t.device, z_ + offs[i], scale, t.numel);
                w[i] = w_ + offs[i];
            }
        }
        fn(si, w);
    }
}

// ---- the block pass ----

Acts BlockPass::acts(size_t si) const {
    const size_t N = (size_t)in_.N, C = (size_t)c_.hidden;
    const size_t qd = (size_t)c_.heads * c_.head_dim, kvd = (size_t)c_.kv_heads * c_.head_dim;
    const size_t Cs = N * C, Qs = N * std::max(qd, C), Ks = N * std::max(kvd, C);
    Acts x;
    x.a = arena_ + si * stream_floats_;
    x.tmp = x.a + Cs;
    x.q = x.tmp + Cs;
    x.att = x.q + Qs;
    x.k = x.att + Qs;
    x.v = x.k + Ks;
    x.m1 = x.v + Ks;
    x.m2 = x.m1 + N * std::max((size_t)c_.intermediate, qd);
    x.h = streams_[si].h;
    return x;
}

template <typename F>
void BlockPass::timed(KernelKind kind, F&& f) {
    if (timer_) timer_->start();
    f();
    if (timer_) timer_->stop(kind);
}

void BlockPass::norm(float* Acts::*out, const WeightBias& w) { norm(out, &Acts::h, w, c_.hidden); }

void BlockPass::norm(float* Acts::*out, float* Acts::*in, const WeightBias& w, int width, int per_token) {
    const int ids[2] = {w.w, w.b};
    const int rows = in_.N * per_token;
    copies_.with(tensors_, ids, 2, streams_, noise_, noise_ms_, [&](size_t si, const float* const* p) {
        Acts x = acts(si);
        timed(KernelKind::Other, [&] { norm_rows(be_, c_, x.*out, x.*in, p[0], p[1], rows, width); });
    });
}

bool BlockPass::pieces_from_masters(float* Acts::*in, const WeightBias& w, int in_dim, std::initializer_list<Piece> pieces,
                                    bool transposed, bool relu) {
    const int ids[2] = {w.w, w.b};
    if (transposed || !copies_.pairable(tensors_, ids, 2, streams_)) return false;
    const Tensor& wt = tensors_[(size_t)w.w];
    const Tensor* bt = w.b >= 0 ? &tensors_[(size_t)w.b] : nullptr;
    for (size_t si = 0; si < streams_.size(); si += 2) {
        Acts x = acts(si), y = acts(si + 1);
        const NoiseSpec wn{streams_[si].seed, wt.id, noise_, streams_[si].scale};
        const NoiseSpec bn{streams_[si].seed, bt ? bt->id : 0u, noise_, streams_[si].scale};
        size_t row = 0;
        for (const Piece& piece : pieces) {
            float* outs[2] = {x.*piece.out, y.*piece.out};
            const float* ins[2] = {x.*in, y.*in};
            bool done = false;
            timed(KernelKind::Linear, [&] {
                done = be_.linear_pair_noisy(outs, ins, wt.device + row * (size_t)in_dim, bt ? bt->device + row : nullptr, wn,
                                             row * (size_t)in_dim, bn, row, in_.N, in_dim, piece.width, false, relu);
            });
            // The backend decides by the shape alone: every pair after the first is taken alike.
            if (!done && (si > 0 || row > 0))
                throw std::logic_error("linear_pair_noisy refused a shape it took before (" + wt.name + ")");
            if (!done) return false;
            row += (size_t)piece.width;
        }
    }
    return true;
}

bool BlockPass::linear_relu(float* Acts::*out, float* Acts::*in, const WeightBias& w, int in_dim, int out_dim) {
    return pieces_from_masters(in, w, in_dim, {Piece{out, out_dim}}, tensors_[(size_t)w.w].transposed, true);
}

void BlockPass::linear(float* Acts::*out, float* Acts::*in, const WeightBias& w, int in_dim, int out_dim) {
    const int ids[2] = {w.w, w.b};
    const bool transposed = tensors_[(size_t)w.w].transposed;
    if (pieces_from_masters(in, w, in_dim, {Piece{out, out_dim}}, transposed)) return;
    // A pair's two products side by side, from both its copies.
    bool paired = copies_.with_pairs(tensors_, ids, 2, streams_, noise_, noise_ms_,
                                     [&](size_t si, const float* const* plus, const float* const* minus) {
                                         Acts x = acts(si), y = acts(si + 1);
                                         float* outs[2] = {x.*out, y.*out};
                                         const float* ins[2] = {x.*in, y.*in};
                                         const float* ws[2] = {plus[0], minus[0]};
                                         const float* bs[2] = {plus[1], minus[1]};
                                         timed(KernelKind::Linear, [&] {
                                             be_.linear_streams(2, outs, ins, ws, bs, in_.N, in_dim, out_dim, transposed);
                                         });
                                     });
    if (paired) return;
    copies_.with(tensors_, ids, 2, streams_, noise_, noise_ms_, [&](size_t si, const float* const* p) {
        Acts x = acts(si);
        timed(KernelKind::Linear, [&] { be_.linear(x.*out, x.*in, p[0], p[1], in_.N, in_dim, out_dim, transposed); });
    });
}

void BlockPass::norm_pieces(float* Acts::*x, const WeightBias& w, int pieces, int width) {
    const int ids[2] = {w.w, w.b};
    copies_.with(tensors_, ids, 2, streams_, noise_, noise_ms_, [&](size_t si, const float* const* p) {
        Acts a = acts(si);
        timed(KernelKind::Other, [&] { be_.rmsnorm(a.*x, a.*x, p[0], in_.N * pieces, width, c_.norm_eps); });
    });
}

void BlockPass::linear_pieces(float* Acts::*in, const WeightBias& w, int in_dim, std::initializer_list<Piece> pieces) {
    const Tensor& t = tensors_[(size_t)w.w];
    if (t.transposed) throw std::runtime_error("tensor " + t.name + " is split by rows, so it must be stored [out, in]");
    int rows = 0;
    for (const Piece& piece : pieces) rows += piece.width;
    if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != in_dim)
        throw std::runtime_error("tensor " + t.name + " must be [" + std::to_string(rows) + ", " + std::to_string(in_dim) +
                                 "] to be split into its pieces");
    // Every piece for k streams side by side (k = 2: a +eps/-eps pair, as linear() runs them),
    // stream s computing with the weight W[s] and bias b[s].
    auto run = [&](int k, const Acts* xs, const float* const* W, const float* const* b) {
        size_t row = 0;
        for (const Piece& piece : pieces) {
            float* outs[2] = {nullptr, nullptr};
            const float* ins[2] = {nullptr, nullptr};
            const float* ws[2] = {nullptr, nullptr};
            const float* bs[2] = {nullptr, nullptr};
            for (int s = 0; s < k; s++) {
                outs[s] = xs[s].*piece.out;
                ins[s] = xs[s].*in;
                ws[s] = W[s] + row * (size_t)in_dim;
                bs[s] = b[s] ? b[s] + row : nullptr;
            }
            timed(KernelKind::Linear, [&] {
                if (k == 1)
                    be_.linear(outs[0], ins[0], ws[0], bs[0], in_.N, in_dim, piece.width, false);
                else
                    be_.linear_streams(k, outs, ins, ws, bs, in_.N, in_dim, piece.width, false);
            });
            row += (size_t)piece.width;
        }
    };
    if (pieces_from_masters(in, w, in_dim, pieces, false)) return;
    const int ids[2] = {w.w, w.b};
    bool paired = copies_.with_pairs(tensors_, ids, 2, streams_, noise_, noise_ms_,
                                     [&](size_t si, const float* const* plus, const float* const* minus) {
                                         const Acts xs[2] = {acts(si), acts(si + 1)};
                                         const float* W[2] = {plus[0], minus[0]};
                                         const float* b[2] = {plus[1], minus[1]};
                                         run(2, xs, W, b);
                                     });
    if (paired) return;
    copies_.with(tensors_, ids, 2, streams_, noise_, noise_ms_, [&](size_t si, const float* const* p) {
        const Acts xs[1] = {acts(si)};
        run(1, xs, &p[0], &p[1]);
    });
}

void BlockPass::each(const std::function<void(Acts& x, float* h)>& f) {
    for (size_t si = 0; si < streams_.size(); si++) {
        Acts x = acts(si);
        f(x, streams_[si].h);
    }
}

void BlockPass::run(BlockRecipe recipe, int index, const BlockParams& w) {
    if (index < 0 || (size_t)index >= c_.layer_attention.size())
        throw std::runtime_error("block " + std::to_string(index) + " has no layer_attention entry (the config has " +
                                 std::to_string(c_.layer_attention.size()) + ")");
    block_ = index;
    recipe(*this, w);
}

void BlockPass::rope(float* x, int ld, int nheads) {
    const int r = layer().rope;
    if (r < 0) return;
    const PassRope& t = in_.ropes[(size_t)r];
    timed(KernelKind::Attention, [&] {
        be_.rope(x, ld, nheads, c_.head_dim, c_.ropes[(size_t)r].rotary_dim, in_.positions, in_.N, t.inv_freq, t.scale);
    });
}

void BlockPass::attention(float* out, const float* q, const float* k, const float* v, const AttentionShape& s) {
    const KvCache* kv = in_.kv;
    if (!kv) {
        timed(KernelKind::Attention, [&] { be_.attention(out, q, k, v, s, in_.seq_start, in_.nseq); });
        return;
    }
    const int width = s.kv_heads * s.head_dim;
    float* kc = kv->k[(size_t)block_];
    float* vc = kv->v[(size_t)block_];
    timed(KernelKind::Attention, [&] {
        be_.kv_store(kc, k, s.ldk, kv->rows, in_.N, width);
        be_.kv_store(vc, v, s.ldv, kv->rows, in_.N, width);
        if (!kv->past) {
            be_.attention(out, q, k, v, s, in_.seq_start, in_.nseq);
            return;
        }
        AttentionShape cached = s;
        cached.ldk = cached.ldv = width;
        be_.attention_cached(out, q, kc, vc, cached, in_.positions, in_.N, in_.seq_start, kv->kv_start, in_.nseq);
    });
}

void BlockPass::activation(float* x, int width) {
    timed(KernelKind::Other, [&] { be_.activation(x, (size_t)in_.N * width, (Act)c_.activation); });
}

void BlockPass::gated_silu(float* gate, const float* up, int width) {
    timed(KernelKind::Other, [&] { be_.gated_silu(gate, up, (size_t)in_.N * width); });
}

void BlockPass::gated_act(float* gate, const float* up, int width) {
    timed(KernelKind::Other, [&] { be_.gated_act(gate, up, (size_t)in_.N * width, (Act)c_.activation); });
}

void BlockPass::residual(float* Acts::*x) {
    const size_t n = (size_t)in_.N * c_.hidden;
    for (size_t si = 0; si < streams_.size(); si++) {
        Acts a = acts(si);
        timed(KernelKind::Other, [&] { be_.add(streams_[si].h, a.*x, n); });
    }
}

void BlockPass::add(float* Acts::*x, float* Acts::*y) {
    const size_t n = (size_t)in_.N * c_.hidden;
    for (size_t si = 0; si < streams_.size(); si++) {
        Acts a = acts(si);
        timed(KernelKind::Other, [&] { be_.add(a.*x, a.*y, n); });
    }
}

void BlockPass::copy_rows(float* out, int ld_out, const float* in, int ld_in, int rows, int cols) {
    timed(KernelKind::Other, [&] { be_.copy_rows(out, ld_out, in, ld_in, rows, cols); });
}

}  // namespace spw
