#include "trainable.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "../arch/params.h"
#include "spillway/noise.h"

namespace spw {

namespace {

size_t pad16(size_t n) { return (n + 15) / 16 * 16; }

// A tensor's float32 values: its master when loaded, else read from its checkpoint file.
const float* values_of(const Tensor& t, std::vector<float>& tmp) {
    if (t.master) return t.master;
    tmp.resize(t.numel);
    model_read_tensor(t, tmp.data());
    return tmp.data();
}

std::string stems_of(const Model& m) {
    std::string list;
    for (const BlockField& f : block_fields())
        if (!m.params.blocks.empty() && (m.params.blocks[0].*f.field).w >= 0 &&
            m.tensors[(size_t)(m.params.blocks[0].*f.field).w].shape.size() == 2)
            list += std::string(list.empty() ? "" : ", ") + f.stem;
    return list;
}

}  // namespace

LduFactors ldu_first(const float* w, int out, int in, int r) {
    if (r < 1 || r > std::min(out, in))
        throw std::runtime_error("LoLDU rank " + std::to_string(r) + " must be from 1 to " + std::to_string(std::min(out, in)));
    const size_t O = (size_t)out, I = (size_t)in, R = (size_t)r;
    // What is left after step k is W - sum_{j<k} PL_j d_j U_j: L and U are unit triangular, D apart.
    std::vector<double> pl(O * R, 0.0), u(R * I, 0.0), d(R, 0.0), col(O);
    std::vector<char> pivoted(O, 0);
    LduFactors f;
    f.d.resize(R);
    for (size_t k = 0; k < R; k++) {
        // Column k of what is left (the Schur complement), on the rows not yet pivoted.
        size_t p = O;
        double best = -1.0;
        for (size_t i = 0; i < O; i++) {
            if (pivoted[i]) continue;
            double v = (double)w[i * I + k];
            for (size_t j = 0; j < k; j++) v -= pl[i * R + j] * d[j] * u[j * I + k];
            col[i] = v;
            if (std::fabs(v) > best) {
                best = std::fabs(v);
                p = i;
            }
        }
        if (!(best > 0.0))
            throw std::runtime_error("LoLDU: the matrix has rank " + std::to_string(k) + ", below the rank " +
                                     std::to_string(r) + " asked for");
        pivoted[p] = 1;
        const double pivot = col[p];
        d[k] = pivot;
        f.d[k] = (float)pivot;
        // Row k of U: the pivot row of what is left, over columns k.., divided by the pivot.
        for (size_t c = k; c < I; c++) {
            double v = (double)w[p * I + c];
            for (size_t j = 0; j < k; j++) v -= pl[p * R + j] * d[j] * u[j * I + c];
            u[k * I + c] = c == k ? 1.0 : v / pivot;
        }
        for (size_t i = 0; i < O; i++)
            if (!pivoted[i]) pl[i * R + k] = col[i] / pivot;
        pl[p * R + k] = 1.0;
    }
    f.pl.assign(pl.begin(), pl.end());
    f.u.assign(u.begin(), u.end());
    return f;
}

float lora_init(uint64_t seed, uint32_t id, uint64_t k, int in) {
    Philox4 x = philox4x32_10((uint32_t)(k >> 2), (uint32_t)(k >> 34), id, 0x4C6F5241u, (uint32_t)seed,
                              (uint32_t)(seed >> 32));
    double v = ((double)(x.x[k & 3] >> 8) + 0.5) / 8388608.0 - 1.0;  // (-1, 1), exact in float64
    return (float)(v / std::sqrt((double)in));
}

Trainable::Trainable(Backend& be, Model& model, const TrainSpec& spec) : be_(be), model_(model), spec_(spec) {
    auto t0 = std::chrono::steady_clock::now();
    adapter_of_.assign(model_.tensors.size(), -1);
    try {
        switch (spec_.kind) {
            case TrainKind::Full:
                for (const Tensor& t : model_.tensors) trainable_elements_ += t.numel;
                break;
            case TrainKind::Sparse:
                mark_sparse();
                break;
            case TrainKind::Lora:
            case TrainKind::Loldu:
                for (Tensor& t : model_.tensors) t.frozen = true;
                build_adapters();
                break;
            case TrainKind::Tokens:
                for (Tensor& t : model_.tensors) t.frozen = true;
                build_tokens();
                break;
        }
    } catch (...) {
        for (Tensor& t : tensors_)
            if (t.device) be_.release(t.device);
        throw;
    }
    setup_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Trainable::~Trainable() {
    for (Tensor& t : tensors_)
        if (t.device) be_.release(t.device);
    if (noise_) be_.release(noise_);
    if (work_) be_.release(work_);
}

// Every block matrix trains its smallest weights: the threshold is the k-th smallest |theta| of the
// tensor at load (0-based, k = floor(fraction * numel)), so about that share is below it.
void Trainable::mark_sparse() {
    if (!(spec_.fraction > 0.0 && spec_.fraction <= 1.0))
        throw std::runtime_error("the sparse fraction must be above 0 and at most 1");
    std::vector<bool> matrix(model_.tensors.size(), false);
    for (const BlockParams& b : model_.params.blocks)
        for (const BlockField& f : block_fields()) {
            int w = (b.*f.field).w;
            if (w >= 0 && model_.tensors[(size_t)w].shape.size() == 2) matrix[(size_t)w] = true;
        }
    std::vector<float> tmp, mag;
    for (size_t ti = 0; ti < model_.tensors.size(); ti++) {
        Tensor& t = model_.tensors[ti];
        if (!matrix[ti]) {
            t.frozen = true;
            continue;
        }
        size_t k = (size_t)std::floor(spec_.fraction * (double)t.numel);
        if (k >= t.numel) {
            trainable_elements_ += t.numel;
            continue;
        }
        const float* v = values_of(t, tmp);
        mag.resize(t.numel);
        for (size_t i = 0; i < t.numel; i++) mag[i] = std::fabs(v[i]);
        std::nth_element(mag.begin(), mag.begin() + (ptrdiff_t)k, mag.end());
        t.mask_below = mag[k];
        for (size_t i = 0; i < t.numel; i++) trainable_elements_ += std::fabs(v[i]) < t.mask_below;
    }
}

int Trainable::add_tensor(const std::string& name, std::vector<int64_t> shape, std::vector<float> values, bool frozen,
                          bool decay) {
    Tensor t;
    t.name = name;
    t.id = fnv1a32(name.data(), name.size());
    t.shape = std::move(shape);
    t.numel = values.size();
    t.frozen = frozen;
    t.decay = decay;
    if (!frozen)
        for (const Tensor& o : tensors_)
            if (!o.frozen && o.id == t.id) throw std::runtime_error("adapter tensors " + o.name + " and " + name + " share a noise id");
    t.device = static_cast<float*>(be_.alloc(pad16(t.numel) * sizeof(float)));
    be_.upload(t.device, values.data(), t.numel * sizeof(float));
    if (!frozen) trainable_elements_ += t.numel;
    tensors_.push_back(std::move(t));
    return (int)tensors_.size() - 1;
}

void Trainable::build_adapters() {
    const bool lora = spec_.kind == TrainKind::Lora;
    const char* what = lora ? "LoRA" : "LoLDU";
    if (spec_.rank < 1) throw std::runtime_error(std::string(what) + " rank must be at least 1");
    if (lora && !(spec_.alpha > 0.f)) throw std::runtime_error("LoRA alpha must be above 0");
    if (spec_.targets.empty()) throw std::runtime_error(std::string(what) + " needs at least one target matrix");
    std::vector<const BlockField*> fields;
    for (const std::string& stem : spec_.targets) {
        const BlockField* found = nullptr;
        for (const BlockField& f : block_fields())
            if (stem == f.stem) found = &f;
        if (!found || model_.params.blocks.empty() || (model_.params.blocks[0].*found->field).w < 0 ||
            model_.tensors[(size_t)(model_.params.blocks[0].*found->field).w].shape.size() != 2)
            throw std::runtime_error(std::string(what) + " target '" + stem + "' is not a matrix of this model's blocks (" +
                                     stems_of(model_) + ")");
        if (std::find(fields.begin(), fields.end(), found) == fields.end()) fields.push_back(found);
    }
    const int r = spec_.rank;
    std::vector<float> tmp;
    size_t noise_floats = 0, work_floats = 0;
    for (const BlockParams& b : model_.params.blocks)
        for (const BlockField* f : fields) {
            int wi = (b.*f->field).w;
            const Tensor& base = model_.tensors[(size_t)wi];
            if (base.transposed)
                throw std::runtime_error(std::string(what) + " cannot adapt " + base.name +
                                         ": weights stored [in, out] (GPT-2's Conv1D) are not supported");
            const std::string suffix = ".weight";
            if (base.name.size() <= suffix.size() || base.name.compare(base.name.size() - suffix.size(), suffix.size(), suffix) != 0)
                throw std::runtime_error(std::string(what) + " cannot name an adapter for " + base.name + " (no .weight suffix)");
            const std::string module = base.name.substr(0, base.name.size() - suffix.size());
            Adapter ad;
            ad.weight = wi;
            ad.out = (int)base.shape[0];
            ad.in = (int)base.shape[1];
            if (r > std::min(ad.out, ad.in))
                throw std::runtime_error(std::string(what) + " rank " + std::to_string(r) + " exceeds " + base.name + "'s " +
                                         std::to_string(ad.out) + " x " + std::to_string(ad.in));
            const size_t O = (size_t)ad.out, I = (size_t)ad.in, R = (size_t)r;
            if (lora) {
                // The names the peft library gives a LoRA of this model (its noise ids).
                const std::string a_name = "base_model.model." + module + ".lora_A.weight";
                std::vector<float> a(R * I);
                uint32_t a_id = fnv1a32(a_name.data(), a_name.size());
                for (size_t k = 0; k < a.size(); k++) a[k] = lora_init(spec_.seed, a_id, k, ad.in);
                ad.a = add_tensor(a_name, {(int64_t)R, (int64_t)I}, std::move(a), false, true);
                ad.b = add_tensor("base_model.model." + module + ".lora_B.weight", {(int64_t)O, (int64_t)R},
                                  std::vector<float>(O * R, 0.f), false, true);
                noise_floats = std::max(noise_floats, pad16(R * I) + pad16(O * R));
                work_floats = std::max(work_floats, pad16(R * I) + pad16(O * R));
            } else {
                LduFactors f = ldu_first(values_of(base, tmp), ad.out, ad.in, r);
                std::vector<float> neg_d(R);
                for (size_t k = 0; k < R; k++) neg_d[k] = -f.d[k];
                ad.a = add_tensor(module + ".loldu_U", {(int64_t)R, (int64_t)I}, std::move(f.u), true, false);
                ad.b = add_tensor(module + ".loldu_PL", {(int64_t)O, (int64_t)R}, std::move(f.pl), true, false);
                ad.neg_d = add_tensor(module + ".loldu_neg_D", {(int64_t)R}, std::move(neg_d), true, false);
                ad.z = add_tensor(module + ".loldu_z", {(int64_t)R}, f.d, false, false);
                ad.s = add_tensor(module + ".loldu_s", {1}, std::vector<float>{1.f}, false, false);
                noise_floats = std::max(noise_floats, pad16(R) + 16);
                work_floats = std::max(work_floats, pad16(R) + 16 + pad16(R) + pad16(R * I));
            }
            adapter_of_[(size_t)wi] = (int)adapters_.size();
            adapters_.push_back(ad);
        }
    noise_ = static_cast<float*>(be_.alloc(noise_floats * sizeof(float)));
    work_ = static_cast<float*>(be_.alloc(work_floats * sizeof(float)));
    scratch_floats_ = noise_floats + work_floats;
}

// A delta of the chosen rows for the token embedding and, when the head is a tensor of its own, for
// the head: named as the peft library names the module (its noise id), "token_rows_delta" (peft's
// trainable_tokens_delta holds the rows themselves, base plus this; the export adds them).
void Trainable::build_tokens() {
    const int tok = model_.params.embed.tok;
    if (tok < 0) throw std::runtime_error("trainable tokens: this model has no token embedding");
    if (model_.params.embed.proj >= 0)
        throw std::runtime_error("trainable tokens: a projected token embedding (OPT-350m's project_in) is not supported");
    if (spec_.tokens.empty()) throw std::runtime_error("trainable tokens: no token chosen (the task's label words)");
    const Tensor& e = model_.tensors[(size_t)tok];
    if (e.shape.size() != 2) throw std::runtime_error("trainable tokens: " + e.name + " is not a matrix");
    std::vector<int32_t> seen;
    for (int32_t t : spec_.tokens) {
        if (t < 0 || t >= e.shape[0])
            throw std::runtime_error("trainable tokens: token " + std::to_string(t) + " is not a row of " + e.name + " (" +
                                     std::to_string(e.shape[0]) + " rows)");
        if (std::find(seen.begin(), seen.end(), t) != seen.end())
            throw std::runtime_error("trainable tokens: token " + std::to_string(t) + " is chosen twice");
        seen.push_back(t);
    }
    const size_t n = spec_.tokens.size();
    size_t most = 0;
    std::vector<int> bases{tok};
    const int head = model_.params.head.lm_head;
    if (head >= 0 && head != tok) bases.push_back(head);  // an untied head: its rows get their own delta
    for (int wi : bases) {
        const Tensor& base = model_.tensors[(size_t)wi];
        if (base.shape.size() != 2 || base.shape[0] != e.shape[0] || base.transposed)
            throw std::runtime_error("trainable tokens: " + base.name + " is not a [vocabulary, width] matrix");
        const std::string suffix = ".weight";
        if (base.name.size() <= suffix.size() || base.name.compare(base.name.size() - suffix.size(), suffix.size(), suffix) != 0)
            throw std::runtime_error("trainable tokens cannot name a delta for " + base.name + " (no .weight suffix)");
        const std::string module = base.name.substr(0, base.name.size() - suffix.size());
        Adapter ad;
        ad.weight = wi;
        ad.out = (int)base.shape[0];
        ad.in = (int)base.shape[1];
        ad.a = add_tensor("base_model.model." + module + ".token_rows_delta", {(int64_t)n, (int64_t)ad.in},
                          std::vector<float>(n * (size_t)ad.in, 0.f), false, false);
        most = std::max(most, pad16(n * (size_t)ad.in));
        adapter_of_[(size_t)wi] = (int)adapters_.size();
        adapters_.push_back(ad);
    }
    noise_ = static_cast<float*>(be_.alloc(most * sizeof(float)));
    work_ = static_cast<float*>(be_.alloc(most * sizeof(float)));
    scratch_floats_ = 2 * most;
}

uint64_t Trainable::device_bytes() const {
    uint64_t n = scratch_floats_;
    for (const Tensor& t : tensors_) n += pad16(t.numel);
    return n * sizeof(float);
}

int Trainable::adapter_of(int ti) const { return ti >= 0 && (size_t)ti < adapter_of_.size() ? adapter_of_[(size_t)ti] : -1; }

int Trainable::find(const std::string& name) const {
    for (size_t i = 0; i < tensors_.size(); i++)
        if (tensors_[i].name == name) return (int)i;
    return -1;
}

void Trainable::read(size_t i, float* out) { be_.download(out, tensors_.at(i).device, tensors_[i].numel * sizeof(float)); }

void Trainable::write(size_t i, const float* in) {
    be_.upload(tensors_.at(i).device, in, tensors_[i].numel * sizeof(float));
    be_.synchronize();
}

void Trainable::update(const std::vector<UpdateTerm>& terms, float decay, int noise) {
    for (Tensor& t : tensors_)
        if (!t.frozen) be_.zo_update(t.device, t.numel, t.id, noise, terms.data(), (int)terms.size(), t.decay ? decay : 0.f);
    be_.synchronize();
}

void Trainable::draw(int adapter, uint64_t seed, int noise) {
    const Adapter& ad = adapters_[(size_t)adapter];
    if (spec_.kind == TrainKind::Tokens) {
        const Tensor& d = tensors_[(size_t)ad.a];
        be_.noise_fill(noise_, d.numel, seed, d.id, noise, 0);
        return;
    }
    if (spec_.kind == TrainKind::Lora) {
        const Tensor &a = tensors_[(size_t)ad.a], &b = tensors_[(size_t)ad.b];
        be_.noise_fill(noise_, a.numel, seed, a.id, noise, 0);
        be_.noise_fill(noise_ + pad16(a.numel), b.numel, seed, b.id, noise, 0);
        return;
    }
    const Tensor &z = tensors_[(size_t)ad.z], &s = tensors_[(size_t)ad.s];
    be_.noise_fill(noise_, z.numel, seed, z.id, noise, 0);
    be_.noise_fill(noise_ + pad16(z.numel), 1, seed, s.id, noise, 0);
}

// lora:  scratch = B' A' (out, in), w = base + alpha/r scratch, A' and B' the adapter as the stream
//        perturbs it (A + scale z_A, B + scale z_B).
// loldu: v = s' z' - D_r (s' z' first, then + (-D_r)), scratch = P L_r (diag(v) U_r), w = base + scratch.
// tokens: w = base, then each chosen row + its delta as the stream perturbs it (scratch unused).
void Trainable::merge(int adapter, float scale, const Tensor& base, int dtype, float* w, float* scratch) {
    const Adapter& ad = adapters_[(size_t)adapter];
    if (spec_.kind == TrainKind::Tokens) {
        if (base.device16)
            be_.widen(w, base.device16, base.numel, dtype);
        else
            be_.copy(w, base.device, base.numel * sizeof(float));
        const float* d = perturbed_by(tensors_[(size_t)ad.a], scale, noise_, work_);
        const size_t C = (size_t)ad.in;
        for (size_t j = 0; j < spec_.tokens.size(); j++) be_.add(w + (size_t)spec_.tokens[j] * C, d + j * C, C);
        return;
    }
    float c = 1.f;
    if (spec_.kind == TrainKind::Lora) {
        const Tensor &a = tensors_[(size_t)ad.a], &b = tensors_[(size_t)ad.b];
        const float* ap = perturbed_by(a, scale, noise_, work_);
        const float* bp = perturbed_by(b, scale, noise_ + pad16(a.numel), work_ + pad16(a.numel));
        be_.linear(scratch, bp, ap, nullptr, ad.out, spec_.rank, ad.in, true);
        c = spec_.alpha / (float)spec_.rank;
    } else {
        const Tensor &z = tensors_[(size_t)ad.z], &s = tensors_[(size_t)ad.s];
        const size_t R = (size_t)spec_.rank;
        float* zw = work_;
        float* sw = zw + pad16(R);
        float* v = sw + 16;
        float* uw = v + pad16(R);
        const float* zp = perturbed_by(z, scale, noise_, zw);
        const float* sp = perturbed_by(s, scale, noise_ + pad16(R), sw);
        be_.copy(v, zp, R * sizeof(float));
        be_.scale_rows(v, sp, 1, (int)R);
        be_.add(v, tensors_[(size_t)ad.neg_d].device, R);
        be_.copy(uw, tensors_[(size_t)ad.a].device, R * (size_t)ad.in * sizeof(float));
        be_.scale_rows(uw, v, (int)R, ad.in);
        be_.linear(scratch, tensors_[(size_t)ad.b].device, uw, nullptr, ad.out, (int)R, ad.in, true);
    }
    if (base.device16)
        be_.perturb_packed(w, base.device16, scratch, c, base.numel, dtype);
    else
        be_.perturb(w, base.device, scratch, c, base.numel);
}

const float* Trainable::perturbed_by(const Tensor& t, float scale, const float* noise, float* work) {
    if (scale == 0.f) return t.device;
    be_.perturb(work, t.device, noise, scale, t.numel);
    return work;
}

const std::vector<int32_t>* Trainable::adapted_rows(int adapter) const {
    (void)adapter;
    return spec_.kind == TrainKind::Tokens ? &spec_.tokens : nullptr;
}

// merge's tokens case row by row: each chosen row of the base, + its delta as the stream perturbs it.
void Trainable::merge_rows(int adapter, float scale, const Tensor& base, int dtype, float* rows) {
    if (spec_.kind != TrainKind::Tokens) throw std::logic_error("merge_rows: only trainable tokens adapt rows");
    const Adapter& ad = adapters_[(size_t)adapter];
    const size_t C = (size_t)ad.in;
    const float* d = perturbed_by(tensors_[(size_t)ad.a], scale, noise_, work_);
    for (size_t j = 0; j < spec_.tokens.size(); j++) {
        const size_t r = (size_t)spec_.tokens[j];
        if (base.device16)
            be_.widen(rows + j * C, base.device16 + r * C, C, dtype);
        else
            be_.copy(rows + j * C, base.device + r * C, C * sizeof(float));
        be_.add(rows + j * C, d + j * C, C);
    }
}

}  // namespace spw
