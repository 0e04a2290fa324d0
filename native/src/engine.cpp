#include "spillway/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>

#include "arch/block.h"
#include "arch/family.h"
#include "arch/rope.h"
#include "generate/decoding.h"
#include "prepared.h"
#include "spillway/noise.h"
#include "tier/residency.h"
#include "zo/trainable.h"

namespace spw {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void check_cancel(const std::atomic<bool>* cancel) {
    if (cancel && cancel->load(std::memory_order_relaxed)) throw CancelledError();
}

// Sequences may run past max_position_embeddings when every rotary table defines such positions.
bool positions_unbounded(const ModelConfig& c) {
    if (c.ropes.empty()) return false;
    for (const RopeConfig& r : c.ropes)
        if (!rope_extends_past_max(r)) return false;
    return true;
}

}  // namespace

Engine::Engine(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, const TierOptions& tiers,
               const TrainSpec* train)
    : backend_(std::move(backend)), model_(std::move(model)) {
    const ModelConfig& c = model_->config;
    family_ = &family_of(c.family);
    check_params(*family_, *model_);
    // Before the residency: the trainable set reads the base as loaded (thresholds, decompositions).
    trainable_ = std::make_unique<Trainable>(*backend_, *model_, train ? *train : TrainSpec{});
    residency_ = std::make_unique<Residency>(*backend_, *model_, tiers);
    copies_ = std::make_unique<WorkingCopies>(*backend_, residency_->master_dtype());
    if (!trainable_->adapters().empty()) copies_->set_adapters(trainable_.get());
    use_ropes(0);
}

Engine::~Engine() {
    decoding_.reset();
    residency_.reset();
    copies_.reset();
    trainable_.reset();
    for (float* h : hbuf_)
        if (h) backend_->release(h);
    if (act_) backend_->release(act_);
    if (ints_) backend_->release(ints_);
    if (lp_) backend_->release(lp_);
    if (logits_) backend_->release(logits_);
    if (rope_dev_) backend_->release(rope_dev_);
}

void Engine::use_ropes(int seq_len) {
    const std::vector<RopeConfig>& ropes = model_->config.ropes;
    const bool first = rope_passes_.size() != ropes.size();
    if (first) {
        rope_inv_freq_.assign(ropes.size(), {});
        rope_passes_.assign(ropes.size(), {});
    }
    bool changed = false;
    for (size_t i = 0; i < ropes.size(); i++) {
        if (!first && !rope_depends_on_length(ropes[i])) continue;
        RopeTable t = rope_table(ropes[i], seq_len);
        rope_passes_[i].scale = t.attention_scale;
        if (t.inv_freq == rope_inv_freq_[i]) continue;
        rope_inv_freq_[i] = std::move(t.inv_freq);
        changed = true;
    }
    if (!changed) return;
    if (backend_->host_addressable()) {
        for (size_t i = 0; i < ropes.size(); i++) rope_passes_[i].inv_freq = rope_inv_freq_[i].data();
        return;
    }
    // Every table in one device buffer; a table's length is fixed by its rotary dims.
    std::vector<float> all;
    std::vector<size_t> offs;
    for (const std::vector<float>& f : rope_inv_freq_) {
        offs.push_back(all.size());
        all.insert(all.end(), f.begin(), f.end());
    }
    if (!rope_dev_) rope_dev_ = static_cast<float*>(backend_->alloc(std::max<size_t>(all.size(), 1) * sizeof(float)));
    backend_->upload(rope_dev_, all.data(), all.size() * sizeof(float));
    for (size_t i = 0; i < ropes.size(); i++) rope_passes_[i].inv_freq = rope_dev_ + offs[i];
}

void Engine::read_tensor(const Tensor& t, float* out) { residency_->read_tensor(t, out); }

TierStats Engine::tier_stats() const {
    TierStats s = residency_->stats();
    s.scratch_bytes = (uint64_t)copies_->bytes();
    s.adapter_bytes = trainable_->device_bytes();
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
        if (T > c.max_positions && !positions_unbounded(c))
            throw std::runtime_error("sequence " + std::to_string(s) + " has " + std::to_string(T) +
                                     " tokens; the model allows " + std::to_string(c.max_positions) +
                                     " (max_position_embeddings)");
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

bool Engine::head_chunked() const {
    const int ti = model_->params.head.lm_head;
    return backend_->head_chunk_floats(model_->config.embed_dim, model_->config.vocab) > 0 && model_->tensors[(size_t)ti].device &&
           (trainable_->adapter_of(ti) < 0 || rows_merged());
}

void Engine::ensure_logits(size_t floats) {
    if (floats <= logits_capacity_) return;
    if (logits_) backend_->release(logits_);
    logits_ = nullptr;
    logits_ = static_cast<float*>(backend_->alloc(floats * sizeof(float)));
    logits_capacity_ = floats;
}

bool Engine::rows_merged() const {
    const int ad = trainable_->adapter_of(model_->params.embed.tok);
    return ad >= 0 && trainable_->adapted_rows(ad) && backend_->host_addressable() &&
           backend_->head_chunk_floats(model_->config.embed_dim, model_->config.vocab) > 0;
}

void Engine::merge_stream_rows(int adapter, const Tensor& base, const std::vector<Stream>& streams, int noise,
                               double& noise_ms, float* out, size_t per) {
    for (size_t si = 0; si < streams.size(); si++) {
        if (draws_noise_at(streams, si)) {
            auto t0 = Clock::now();
            trainable_->draw(adapter, streams[si].seed, noise);
            noise_ms += ms_since(t0);
        }
        trainable_->merge_rows(adapter, streams[si].scale, base, residency_->master_dtype(), out + si * per);
    }
}

void Engine::ensure_buffers(int N, int M, int nstreams) {
    const ModelConfig& c = model_->config;
    size_t C = (size_t)c.hidden;
    size_t rows = (size_t)std::max(N, M);
    // Per stream (streams run through a block in lockstep, each with its own activations);
    // the head reuses the arena for its gathered rows and their norm.
    size_t need = acts_floats(c, rows) * (size_t)std::max(1, nstreams);
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
    // z and the working copy hold the largest group of tensors one kernel call reads. A frozen
    // base is read in place (float32) or widened (bf16/fp16 blocks): only its adapted groups need
    // z, and none is ever perturbed as a +eps/-eps pair; the head's group (often the largest) none.
    if (trainable_->base_frozen()) {
        const bool rows = rows_merged();
        const size_t adapted = WorkingCopies::largest_adapted_group(*model_, *trainable_, rows);
        const bool base16 = residency_->master_dtype() != MASTER_F32;
        copies_->reserve(base16 ? std::max(adapted, WorkingCopies::largest_block_group(*model_)) : adapted, adapted);
        if (rows) copies_->reserve_head_chunks(backend_->head_chunk_floats(c.embed_dim, c.vocab));
    } else {
        const bool chunked = head_chunked();
        copies_->reserve(WorkingCopies::largest_group(*model_, chunked));
        if (backend_->runs_pairs()) copies_->reserve_pairs(WorkingCopies::largest_block_group(*model_));
        if (chunked) copies_->reserve_head_chunks(backend_->head_chunk_floats(c.embed_dim, c.vocab));
    }
    // Every stream's log-probabilities (the head runs the streams in one call).
    const size_t lp_need = (size_t)std::max(1, M) * (size_t)std::max(1, nstreams);
    if (lp_need > lp_capacity_) {
        if (lp_) backend_->release(lp_);
        lp_ = nullptr;
        lp_capacity_ = lp_need;
        lp_ = static_cast<float*>(backend_->alloc(lp_capacity_ * sizeof(float)));
    }
}

void Engine::run_forward(const Prepared& p, std::vector<Stream>& streams, std::vector<std::vector<float>>& logprob,
                         int noise, const std::atomic<bool>* cancel, PhaseTimes& times) {
    const ModelConfig& c = model_->config;
    const ModelParams& params = model_->params;
    Backend& be = *backend_;
    const int N = p.N, C = c.hidden;

    // Embeddings: only the rows in use are read, perturbed on the fly.
    auto t0 = Clock::now();
    const Tensor& tok = model_->tensors[(size_t)params.embed.tok];
    const Tensor* pos = params.embed.pos >= 0 ? &model_->tensors[(size_t)params.embed.pos] : nullptr;
    if (params.embed.proj < 0 && trainable_->adapter_of(params.embed.tok) >= 0 && rows_merged()) {
        // Trainable tokens, rows merged on their own: the lookup reads the base, then each position
        // holding a chosen token takes that stream's merged row (plus its position's row), as the
        // lookup of a whole merged copy would (the base itself is frozen, as are the positions).
        const int ad = trainable_->adapter_of(params.embed.tok);
        const std::vector<int32_t>& rows = *trainable_->adapted_rows(ad);
        const size_t per = rows.size() * (size_t)C;
        embed_rows_.resize(streams.size() * per);
        merge_stream_rows(ad, tok, streams, noise, times.noise_ms, embed_rows_.data(), per);
        if (row_of_.size() != (size_t)c.vocab) {
            row_of_.assign((size_t)c.vocab, -1);
            for (size_t j = 0; j < rows.size(); j++) row_of_[(size_t)rows[j]] = (int32_t)j;
        }
        for (size_t si = 0; si < streams.size(); si++) {
            float* h = streams[si].h;
            be.embed(h, tok.device, p.ids, N, C, NoiseSpec{}, pos ? pos->device : nullptr, p.posidx, NoiseSpec{});
            for (int n = 0; n < N; n++) {
                const int32_t j = row_of_[(size_t)p.ids[n]];
                if (j < 0) continue;
                float* out = h + (size_t)n * C;
                std::memcpy(out, embed_rows_.data() + si * per + (size_t)j * C, sizeof(float) * (size_t)C);
                if (pos) {
                    const float* pr = pos->device + (size_t)p.posidx[n] * C;
                    for (int k = 0; k < C; k++) out[k] += pr[k];
                }
            }
        }
    } else if (params.embed.proj < 0 && trainable_->adapter_of(params.embed.tok) >= 0) {
        // Trainable tokens: the lookup reads the embedding with each stream's rows merged in (the
        // base itself is frozen, as are the positions).
        const int ids[1] = {params.embed.tok};
        copies_->with(model_->tensors, ids, 1, streams, noise, times.noise_ms, [&](size_t si, const float* const* w) {
            be.embed(streams[si].h, w[0], p.ids, N, C, NoiseSpec{}, pos ? pos->device : nullptr, p.posidx, NoiseSpec{});
        });
    } else if (params.embed.proj < 0) {
        for (auto& s : streams) {
            NoiseSpec tn{s.seed, tok.id, noise, tok.frozen ? 0.f : s.scale};
            NoiseSpec pn{s.seed, pos ? pos->id : 0u, noise, pos && !pos->frozen ? s.scale : 0.f};
            be.embed(s.h, tok.device, p.ids, N, C, tn, pos ? pos->device : nullptr, p.posidx, pn);
        }
    } else {
        // OPT-350m: h = project_in(tok rows of width E) + positions, the projection perturbed whole
        // like a block's weight; the token and position rows go through the arena.
        const int E = c.embed_dim;
        float* rows = act_;
        float* posrows = act_ + (size_t)N * E;
        const int ids[1] = {params.embed.proj};
        copies_->with(model_->tensors, ids, 1, streams, noise, times.noise_ms, [&](size_t si, const float* const* w) {
            const Stream& s = streams[si];
            NoiseSpec tn{s.seed, tok.id, noise, tok.frozen ? 0.f : s.scale};
            be.embed(rows, tok.device, p.ids, N, E, tn, nullptr, nullptr, NoiseSpec{});
            be.linear(s.h, rows, w[0], nullptr, N, E, C, false);
            if (pos) {
                NoiseSpec pn{s.seed, pos->id, noise, pos->frozen ? 0.f : s.scale};
                be.embed(posrows, pos->device, p.posidx, N, C, pn, nullptr, nullptr, NoiseSpec{});
                be.add(s.h, posrows, (size_t)N * C);
            }
        });
    }
    if (c.embed_scale != 1.f)
        for (auto& s : streams) be.scale(s.h, c.embed_scale, (size_t)N * C);
    times.forward_ms += ms_since(t0);

    // Every stream runs through a block while it is resident (in lockstep, kernel by kernel):
    // the streams of one seed share its noise, and a streamed block is visited once per pass
    // whatever q is. Noise time is its own phase.
    auto timed = [&](double& phase_ms, const std::function<void()>& f) {
        double noise0 = times.noise_ms;
        auto t0 = Clock::now();
        f();
        phase_ms += ms_since(t0) - (times.noise_ms - noise0);
    };

    use_ropes(p.longest);
    PassInputs in{N, p.nseq, p.positions, p.seq_start, rope_passes_, p.kv};
    BlockPass pass(be, c, model_->tensors, *copies_, in, streams, act_, act_capacity_ / std::max<size_t>(1, streams.size()),
                   noise, times.noise_ms);
    residency_->pass(
        [&](size_t ui) {
            check_cancel(cancel);
            const int index = model_->units[ui].index;
            timed(times.forward_ms, [&] { pass.run(family_->block, index, params.blocks[(size_t)index]); });
        },
        times.io_ms);

    check_cancel(cancel);
    const HeadParams& head = params.head;
    // The scored rows of h, the final norm (if any), project_out (if any): x [M, E], in `at`.
    auto head_input = [&](size_t si, const float* const* w, float* at) {
        float* x = at;
        be.gather_rows(x, streams[si].h, p.rows, p.M, C);
        if (c.final_norm) {
            float* xn = at + (size_t)p.M * C;
            norm_rows(be, c, xn, x, w[0], w[1], p.M, C);
            x = xn;
        }
        if (w[2]) {
            float* xp = at + 2 * (size_t)p.M * C;
            be.linear(xp, x, w[2], nullptr, p.M, C, c.embed_dim, false);
            x = xp;
        }
        return x;
    };
    // Decoding: logits_ (n floats) into stream si's results, with Gemma 2's final soft-cap on the
    // host (decoding reads every logit there anyway).
    auto take_logits = [&](size_t si, size_t n) {
        logprob[si].resize(n);
        be.download(logprob[si].data(), logits_, sizeof(float) * n);
        if (c.final_softcap > 0.f)
            for (float& l : logprob[si]) l = c.final_softcap * std::tanh(l / c.final_softcap);
    };
    const int head_adapter = trainable_->adapter_of(head.lm_head);
    if (head_chunked() && (!p.logits || head_adapter >= 0)) {
        // Every stream's rows in its own share of the arena, then one call for all of them: the
        // backend perturbs lm_head a vocabulary chunk at a time (a pair from one draw of z), and
        // patches trainable tokens' rows in with each stream's merged rows.
        const int ids[3] = {head.norm.w, head.norm.b, head.proj};
        const Tensor& lm = model_->tensors[(size_t)head.lm_head];
        const std::vector<int32_t>* rows = head_adapter >= 0 ? trainable_->adapted_rows(head_adapter) : nullptr;
        const size_t per = rows ? rows->size() * (size_t)c.embed_dim : 0;
        std::vector<const float*> patched(streams.size(), nullptr);
        const size_t share = act_capacity_ / std::max<size_t>(1, streams.size());
        std::vector<const float*> xs(streams.size());
        std::vector<float*> lps(streams.size());
        std::vector<NoiseSpec> ns(streams.size());
        timed(times.head_ms, [&] {
            copies_->with(model_->tensors, ids, 3, streams, noise, times.noise_ms, [&](size_t si, const float* const* w) {
                xs[si] = head_input(si, w, act_ + si * share);
                lps[si] = lp_ + si * (size_t)p.M;
                ns[si] = NoiseSpec{streams[si].seed, lm.id, noise, lm.frozen ? 0.f : streams[si].scale};
            });
            if (rows) {
                head_rows_.resize(streams.size() * per);
                merge_stream_rows(head_adapter, lm, streams, noise, times.noise_ms, head_rows_.data(), per);
                for (size_t si = 0; si < streams.size(); si++) patched[si] = head_rows_.data() + si * per;
            }
            if (p.logits) {
                // Decoding with trainable tokens: the base's logits, then the chosen tokens' columns
                // from their merged rows.
                const size_t n = (size_t)p.M * c.vocab;
                ensure_logits(n);
                std::vector<float> cols((size_t)p.M * rows->size());
                for (size_t si = 0; si < streams.size(); si++) {
                    be.linear(logits_, xs[si], lm.device, nullptr, p.M, c.embed_dim, c.vocab, false);
                    be.linear(cols.data(), xs[si], patched[si], nullptr, p.M, c.embed_dim, (int)rows->size(), false);
                    for (int m = 0; m < p.M; m++)
                        for (size_t j = 0; j < rows->size(); j++)
                            logits_[(size_t)m * c.vocab + (size_t)(*rows)[j]] = cols[(size_t)m * rows->size() + j];
                    take_logits(si, n);
                }
                return;
            }
            be.token_logprobs_noisy((int)streams.size(), lps.data(), xs.data(), lm.device, ns.data(), lm.mask_below,
                                    rows ? rows->data() : nullptr, rows ? (int)rows->size() : 0, rows ? patched.data() : nullptr,
                                    copies_->head_chunks(), p.targets, p.M, c.embed_dim, c.vocab, c.final_softcap);
            for (size_t si = 0; si < streams.size(); si++) {
                logprob[si].resize((size_t)p.M);
                be.download(logprob[si].data(), lps[si], sizeof(float) * (size_t)p.M);
            }
        });
    } else {
        const int ids[4] = {head.norm.w, head.norm.b, head.proj, head.lm_head};
        timed(times.head_ms, [&] {
            copies_->with(model_->tensors, ids, 4, streams, noise, times.noise_ms, [&](size_t si, const float* const* w) {
                float* x = head_input(si, w, act_);
                if (p.logits) {
                    const size_t n = (size_t)p.M * c.vocab;
                    ensure_logits(n);
                    be.linear(logits_, x, w[3], nullptr, p.M, c.embed_dim, c.vocab, false);
                    take_logits(si, n);
                } else {
                    be.token_logprobs(lp_, x, w[3], p.targets, p.M, c.embed_dim, c.vocab, c.final_softcap);
                    logprob[si].resize((size_t)p.M);
                    be.download(logprob[si].data(), lp_, sizeof(float) * (size_t)p.M);
                }
            });
        });
    }
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
        p.longest = std::max(p.longest, T);
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
    std::vector<const int32_t*> d = upload_ints({&batch.tokens, &posidx, &positions, &batch.seq_start, &rows, &targets});
    p.ids = d[0];
    p.posidx = d[1];
    p.positions = d[2];
    p.seq_start = d[3];
    p.rows = d[4];
    p.targets = d[5];
}

std::vector<const int32_t*> Engine::upload_ints(const std::vector<const std::vector<int32_t>*>& parts) {
    // One arena for every index array of a pass, grown on demand: no allocation (and on a GPU
    // no implicit synchronisation from freeing) per step.
    std::vector<int32_t> all;
    auto pad = [](size_t n) { return (n + 15) / 16 * 16; };
    std::vector<size_t> offs;
    for (const std::vector<int32_t>* part : parts) {
        offs.push_back(all.size());
        all.insert(all.end(), part->begin(), part->end());
        all.resize(pad(all.size()), 0);
    }
    if (all.size() > ints_capacity_) {
        if (ints_) backend_->release(ints_);
        ints_ = nullptr;
        ints_ = static_cast<int32_t*>(backend_->alloc(all.size() * sizeof(int32_t)));
        ints_capacity_ = all.size();
    }
    backend_->upload(ints_, all.data(), all.size() * sizeof(int32_t));
    std::vector<const int32_t*> out;
    for (size_t o : offs) out.push_back(ints_ + o);
    return out;
}

StepResult Engine::step(const Batch& batch, const StepParams& params, const std::atomic<bool>* cancel, const StepShare* share) {
    auto t_start = Clock::now();
    validate(batch);
    // The update changes the masters: a decode's cache would no longer match them.
    decode_end();
    const bool fzoo = params.estimator == ESTIMATOR_FZOO;
    if (params.estimator != ESTIMATOR_MEZO && !fzoo) throw std::runtime_error("unknown estimator");
    if (params.q < (fzoo ? 2 : 1))
        throw std::runtime_error(fzoo ? "the FZOO estimator needs at least 2 probes (q >= 2): their losses' spread scales the step"
                                      : "q must be at least 1");
    if (params.q > 64) throw std::runtime_error("q is at most 64 (each perturbation keeps two hidden-state buffers)");
    if (!(params.eps > 0.f)) throw std::runtime_error("eps must be positive");
    const int first = share ? share->first : 0, count = share ? share->count : params.q;
    if (first < 0 || count < 1 || first + count > params.q)
        throw std::runtime_error("a shared step computes perturbations " + std::to_string(first) + ".." +
                                 std::to_string(first + count - 1) + ", outside the " + std::to_string(params.q) + " of the step");
    Prepared prep;
    prepare(batch, prep);
    if (fzoo && share) throw std::runtime_error("the FZOO estimator runs on one rank: several ranks share MeZO steps only");
    ensure_buffers(prep.N, prep.M, fzoo ? params.q + 1 : 2 * count);

    // Every stream of the step shares one pass over the units. MeZO: (+eps, -eps) per seed this rank
    // computes; FZOO: the clean masters first, then one +eps probe per seed.
    StepResult res;
    std::vector<Stream> streams;
    for (int j = 0; j < params.q; j++) res.seeds.push_back(step_seed(params.run_seed, params.step, (uint64_t)j));
    if (fzoo) {
        streams.push_back({0, 0.f, hbuf_[0]});
        for (int j = 0; j < params.q; j++) streams.push_back({res.seeds[(size_t)j], params.eps, hbuf_[(size_t)j + 1]});
    } else {
        for (int j = first; j < first + count; j++) {
            uint64_t seed = res.seeds[(size_t)j];
            streams.push_back({seed, params.eps, hbuf_[(size_t)(2 * (j - first))]});
            streams.push_back({seed, -params.eps, hbuf_[(size_t)(2 * (j - first) + 1)]});
        }
    }
    std::vector<std::vector<float>> logprob(streams.size());
    run_forward(prep, streams, logprob, params.noise, cancel, res.times);
    auto example_losses = [&](size_t stream, std::vector<double>& out) {
        std::vector<double> cand;
        std::vector<int32_t> corr, scored;
        losses(batch, logprob[stream], out, corr, cand, scored);
    };
    // coef_j, in float64 and rounded once: lr g_j / q (MeZO), lr g_j / (q sigma) (FZOO).
    std::vector<double> coef(params.q);
    if (fzoo) {
        std::vector<double> per_example;
        example_losses(0, per_example);
        const double l0 = mean(per_example);
        double sum = 0, sq = 0;
        for (int j = 0; j < params.q; j++) {
            example_losses((size_t)j + 1, per_example);
            double l = mean(per_example);
            res.loss_plus.push_back(l);
            res.loss_minus.push_back(l0);
            res.projected_grad.push_back((l - l0) / (double)params.eps);
            sum += l;
        }
        const double m = sum / params.q;
        for (double l : res.loss_plus) sq += (l - m) * (l - m);
        res.sigma = std::sqrt(sq / (params.q - 1));
        res.loss = l0;
        for (int j = 0; j < params.q; j++)
            coef[(size_t)j] = (double)params.lr * res.projected_grad[(size_t)j] / (params.q * res.sigma);
        // All probes equal (sigma 0): no direction to normalise, the step is skipped like a non-finite one.
        res.skipped = !std::isfinite(l0) || !(res.sigma > 0.0) || !std::isfinite(res.sigma);
    } else {
        // Per-example losses of each computed perturbation; shared: exchanged for every perturbation
        // on every example of the global batch.
        std::vector<std::vector<double>> plus((size_t)count), minus((size_t)count);
        for (int k = 0; k < count; k++) {
            example_losses((size_t)(2 * k), plus[(size_t)k]);
            example_losses((size_t)(2 * k + 1), minus[(size_t)k]);
        }
        if (share && share->exchange) {
            PhaseTimes so_far = res.times;
            so_far.total_ms = ms_since(t_start);
            auto tx = Clock::now();
            share->exchange(plus, minus, so_far);
            res.times.exchange_ms = ms_since(tx);
            if ((int)plus.size() != params.q || (int)minus.size() != params.q)
                throw std::runtime_error("the exchange returned losses of " + std::to_string(plus.size()) +
                                         " perturbations; the step has " + std::to_string(params.q));
        }
        for (int j = 0; j < params.q; j++) {
            double Lp = mean(plus[(size_t)j]), Lm = mean(minus[(size_t)j]);
            double g = (Lp - Lm) / (2.0 * (double)params.eps);
            res.loss_plus.push_back(Lp);
            res.loss_minus.push_back(Lm);
            res.projected_grad.push_back(g);
            if (!std::isfinite(Lp) || !std::isfinite(Lm)) res.skipped = true;
            res.loss += (Lp + Lm) / 2.0 / params.q;
            coef[(size_t)j] = (double)params.lr * g / params.q;
        }
    }
    for (int j = 0; j < params.q; j++) {
        float c = (float)coef[(size_t)j];
        if (!std::isfinite(res.projected_grad[(size_t)j]) || !std::isfinite(c)) res.skipped = true;
        res.coef.push_back(c);
    }
    check_cancel(cancel);

    if (!res.skipped) {
        auto tu = Clock::now();
        std::vector<UpdateTerm> terms;
        for (int j = 0; j < params.q; j++) terms.push_back({res.seeds[(size_t)j], res.coef[(size_t)j]});
        // Each unit is updated where its master lives (docs/TIERED-STORE.md, updates); a frozen
        // base (lora, loldu) is not touched at all: no update, no replay, no write-back.
        if (!trainable_->base_frozen()) residency_->update(terms, params.lr * params.weight_decay, params.noise);
        trainable_->update(terms, params.lr * params.weight_decay, params.noise);
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
    std::vector<Stream> streams = {{0, 0.f, hbuf_[0]}};
    std::vector<std::vector<float>> logprob(1);
    ScoreResult res;
    run_forward(prep, streams, logprob, 0, cancel, res.times);
    losses(batch, logprob[0], res.example_loss, res.correct, res.candidate_scores, res.scored_tokens);
    res.token_logprobs = std::move(logprob[0]);
    res.loss = mean(res.example_loss);
    res.times.total_ms = ms_since(t_start);
    return res;
}

}  // namespace spw
