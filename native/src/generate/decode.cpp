// Engine::decode_*: prefill and one pass per decoding step over the same
// units and residency as a training step, through the one block forward with
// a KV cache (arch/block.h), then each sequence's next token (sampling.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>

#include "arch/block.h"
#include "decoding.h"
#include "prepared.h"
#include "sampling.h"
#include "spillway/engine.h"

namespace spw {

namespace {

using Clock = std::chrono::steady_clock;

std::string mib(size_t bytes) { return std::to_string((bytes + (1 << 19)) >> 20) + " MiB"; }

}  // namespace

Decoding::Decoding(Backend& backend, int layers, int nseq, int rows, int kv_width) : be(backend), rows_per_seq(rows) {
    const size_t bytes = (size_t)nseq * (size_t)rows * (size_t)kv_width * sizeof(float);
    kv.k.assign((size_t)layers, nullptr);
    kv.v.assign((size_t)layers, nullptr);
    try {
        for (int l = 0; l < layers; l++) {
            kv.k[(size_t)l] = static_cast<float*>(be.alloc(bytes));
            kv.v[(size_t)l] = static_cast<float*>(be.alloc(bytes));
        }
    } catch (const std::exception& e) {
        for (float* p : kv.k) if (p) be.release(p);
        for (float* p : kv.v) if (p) be.release(p);
        throw std::runtime_error("the KV cache (" + std::to_string(nseq) + " sequences x " + std::to_string(rows) +
                                 " positions x " + std::to_string(layers) + " blocks, " + mib(2 * bytes * (size_t)layers) +
                                 ") does not fit: " + e.what());
    }
}

Decoding::~Decoding() {
    for (float* p : kv.k) if (p) be.release(p);
    for (float* p : kv.v) if (p) be.release(p);
}

namespace {

// The positions a decode may reach: the model's limit, and for a rotary table that changes with
// the sequence's length the length where it changes (dynamic NTK past max_position_embeddings,
// longrope past original_max_position_embeddings). A cache keeps each key rotated by the table it
// was made with, so a decode crossing that length would not be the model's forward of the whole
// sequence; it stops there ("length") instead.
int64_t position_limit(const ModelConfig& c) {
    int64_t limit = c.max_positions;
    for (const RopeConfig& rc : c.ropes) {
        if (rc.type == RopeType::Dynamic && rc.max_positions > 0) limit = std::min<int64_t>(limit, rc.max_positions);
        if (rc.type == RopeType::Longrope && rc.original_max_positions > 0)
            limit = std::min<int64_t>(limit, rc.original_max_positions);
    }
    return limit;
}

}  // namespace

DecodeStep Engine::decode_begin(const DecodeRequest& r, const std::atomic<bool>* cancel) {
    const ModelConfig& c = model_->config;
    const int64_t limit = position_limit(c);
    decode_end();
    if (r.prompts.empty()) throw std::runtime_error("nothing to decode: no prompt");
    if (r.max_new_tokens < 1) throw std::runtime_error("max_new_tokens must be at least 1");
    const SamplingParams& sp = r.sampling;
    if (!(sp.temperature >= 0.f) || !std::isfinite(sp.temperature))
        throw std::runtime_error("temperature must be a finite number >= 0 (0: greedy)");
    if (sp.top_k < 0) throw std::runtime_error("top_k must be >= 0 (0: off)");
    if (!(sp.top_p > 0.f && sp.top_p <= 1.f)) throw std::runtime_error("top_p must be in (0, 1]");
    if (!(sp.repetition_penalty > 0.f) || !std::isfinite(sp.repetition_penalty))
        throw std::runtime_error("repetition_penalty must be a finite number > 0");
    size_t longest = 0;
    for (size_t s = 0; s < r.prompts.size(); s++) {
        const auto& p = r.prompts[s];
        if (p.empty()) throw std::runtime_error("prompt " + std::to_string(s) + " is empty");
        if ((int64_t)p.size() >= limit)
            throw std::runtime_error("prompt " + std::to_string(s) + " has " + std::to_string(p.size()) +
                                     " tokens; the model decodes up to " + std::to_string(limit) +
                                     " positions, which leaves no room for a new token");
        for (int32_t t : p)
            if (t < 0 || t >= c.vocab)
                throw std::runtime_error("prompt " + std::to_string(s) + ": token id " + std::to_string(t) +
                                         " outside the vocabulary (" + std::to_string(c.vocab) + ")");
        longest = std::max(longest, p.size());
    }
    const int rows = (int)std::min<int64_t>((int64_t)longest + r.max_new_tokens, limit);
    auto d = std::make_unique<Decoding>(*backend_, c.layers, (int)r.prompts.size(), rows, c.kv_heads * c.head_dim);
    d->request = r;
    d->tokens = r.prompts;
    d->cached.assign(r.prompts.size(), 0);
    d->finish.assign(r.prompts.size(), FINISH_NONE);
    decoding_ = std::move(d);
    return decode_pass(false, cancel);
}

DecodeStep Engine::decode_next(const std::vector<int32_t>& stop, const std::atomic<bool>* cancel) {
    if (!decoding_) throw std::runtime_error("no decode in progress (decode_begin first)");
    Decoding& d = *decoding_;
    for (int32_t s : stop) {
        if (s < 0 || (size_t)s >= d.finish.size())
            throw std::runtime_error("stop: sequence " + std::to_string(s) + " does not exist");
        if (d.finish[(size_t)s] == FINISH_NONE) d.finish[(size_t)s] = FINISH_STOPPED;
    }
    return decode_pass(true, cancel);
}

void Engine::decode_end() { decoding_.reset(); }

DecodeStep Engine::decode_pass(bool past, const std::atomic<bool>* cancel) {
    auto t_start = Clock::now();
    const ModelConfig& c = model_->config;
    Decoding& d = *decoding_;
    const DecodeRequest& r = d.request;
    const size_t nseq = d.tokens.size();
    const int V = c.vocab;
    DecodeStep res;
    res.tokens.assign(nseq, -1);
    if (r.logits) res.logits.assign(nseq * (size_t)V, 0.f);

    // The unfinished sequences: their prompts (prefill) or their last token, at the positions after
    // what the cache holds.
    std::vector<int32_t> active, ids, posidx, positions, seq_start, head_rows, cache_rows, kv_start, none;
    int longest = 0;
    for (size_t s = 0; s < nseq; s++) {
        if (d.finish[s] != FINISH_NONE) continue;
        active.push_back((int32_t)s);
        seq_start.push_back((int32_t)ids.size());
        const int len = (int)d.tokens[s].size();
        for (int t = past ? d.cached[s] : 0; t < len; t++) {
            ids.push_back(d.tokens[s][(size_t)t]);
            positions.push_back(t);
            posidx.push_back(t + c.position_offset);
            cache_rows.push_back((int32_t)s * d.rows_per_seq + t);
        }
        head_rows.push_back((int32_t)ids.size() - 1);
        kv_start.push_back((int32_t)s * d.rows_per_seq);
        longest = std::max(longest, len);
    }
    if (active.empty()) {
        res.finish = d.finish;
        return res;
    }
    seq_start.push_back((int32_t)ids.size());

    Prepared p;
    p.N = (int)ids.size();
    p.M = p.nseq = (int)active.size();
    p.longest = longest;
    p.logits = true;
    std::vector<const int32_t*> dev = upload_ints({&ids, &posidx, &positions, &seq_start, &head_rows, &none, &cache_rows, &kv_start});
    p.ids = dev[0];
    p.posidx = dev[1];
    p.positions = dev[2];
    p.seq_start = dev[3];
    p.rows = dev[4];
    p.targets = dev[5];
    d.kv.rows = dev[6];
    d.kv.kv_start = dev[7];
    d.kv.past = past;
    p.kv = &d.kv;

    ensure_buffers(p.N, p.M, 1);
    std::vector<Stream> streams = {{0, 0.f, hbuf_[0]}};
    std::vector<std::vector<float>> logits(1);
    run_forward(p, streams, logits, 0, cancel, res.times);

    for (size_t i = 0; i < active.size(); i++) {
        const size_t s = (size_t)active[i];
        d.cached[s] = (int32_t)d.tokens[s].size();
        float* row = logits[0].data() + i * (size_t)V;
        if (r.logits) std::copy(row, row + V, res.logits.begin() + (std::ptrdiff_t)(s * (size_t)V));
        const int generated = (int)(d.tokens[s].size() - r.prompts[s].size());
        const int32_t tok = choose_token(row, V, d.tokens[s], r.sampling, (uint32_t)generated, (uint32_t)s);
        d.tokens[s].push_back(tok);
        res.tokens[s] = tok;
        if (std::find(r.eos.begin(), r.eos.end(), tok) != r.eos.end())
            d.finish[s] = FINISH_EOS;
        else if (generated + 1 >= r.max_new_tokens || (int64_t)d.tokens[s].size() >= position_limit(c))
            d.finish[s] = FINISH_LENGTH;
    }
    res.finish = d.finish;
    res.times.total_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_start).count();
    return res;
}

}  // namespace spw
