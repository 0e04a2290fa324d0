#include "rope.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace spw {

namespace {

[[noreturn]] void bad(const RopeConfig& r, const std::string& what) {
    throw std::runtime_error(std::string("rope (") + rope_type_name(r.type) + "): " + what);
}

// theta^(2i/d) for each pair, in float32 as transformers computes base ** (arange(0, d, 2) / d).
std::vector<float> powers(double theta, int d) {
    std::vector<float> p((size_t)d / 2);
    for (int i = 0; i < d / 2; i++) p[(size_t)i] = powf((float)theta, (float)(2 * i) / (float)d);
    return p;
}

std::vector<float> plain(double theta, int d) {
    std::vector<float> inv = powers(theta, d);
    for (float& x : inv) x = 1.0f / x;
    return inv;
}

// linear and longrope divide by the pretraining length ratio when no factor is given.
double factor_or_ratio(const RopeConfig& r) {
    return r.factor > 0 ? r.factor : (double)r.max_positions / (double)r.original_max_positions;
}

RopeTable llama3(const RopeConfig& r) {
    RopeTable t;
    t.inv_freq = plain(r.theta, r.rotary_dim);
    const float factor = (float)r.factor;
    const float low_wavelen = (float)(r.original_max_positions / r.low_freq_factor);
    const float high_wavelen = (float)(r.original_max_positions / r.high_freq_factor);
    const float span = (float)(r.high_freq_factor - r.low_freq_factor);
    for (float& inv : t.inv_freq) {
        float wavelen = (float)(2.0 * M_PI) / inv;
        float scaled = wavelen > low_wavelen ? inv / factor : inv;
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            float smooth = ((float)r.original_max_positions / wavelen - (float)r.low_freq_factor) / span;
            scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
        inv = scaled;
    }
    return t;
}

double yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

RopeTable yarn(const RopeConfig& r) {
    const int d = r.rotary_dim;
    const double factor = factor_or_ratio(r);
    RopeTable t;
    if (r.attention_factor > 0)
        t.attention_scale = (float)r.attention_factor;
    else if (r.mscale != 0 && r.mscale_all_dim != 0)
        t.attention_scale = (float)(yarn_mscale(factor, r.mscale) / yarn_mscale(factor, r.mscale_all_dim));
    else
        t.attention_scale = (float)yarn_mscale(factor, 1.0);
    // The pair index where a wavelength makes `rotations` turns over the pretraining length.
    auto correction_dim = [&](double rotations) {
        return d * std::log(r.original_max_positions / (rotations * 2 * M_PI)) / (2 * std::log(r.theta));
    };
    double low = correction_dim(r.beta_fast > 0 ? r.beta_fast : 32);
    double high = correction_dim(r.beta_slow > 0 ? r.beta_slow : 1);
    if (r.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, (double)(d - 1));
    if (low == high) high += 0.001;
    const std::vector<float> p = powers(r.theta, d);
    t.inv_freq.resize(p.size());
    for (size_t i = 0; i < p.size(); i++) {
        float ramp = std::clamp(((float)i - (float)low) / (float)(high - low), 0.0f, 1.0f);
        float extrapolate = 1.0f - ramp;  // weight of the unscaled frequency
        float interpolated = 1.0f / ((float)factor * p[i]);
        t.inv_freq[i] = interpolated * (1.0f - extrapolate) + (1.0f / p[i]) * extrapolate;
    }
    return t;
}

RopeTable longrope(const RopeConfig& r, int seq_len) {
    const double factor = factor_or_ratio(r);
    RopeTable t;
    if (r.attention_factor > 0)
        t.attention_scale = (float)r.attention_factor;
    else
        t.attention_scale =
            factor <= 1 ? 1.0f : (float)std::sqrt(1 + std::log(factor) / std::log((double)r.original_max_positions));
    const std::vector<float>& ext = seq_len > r.original_max_positions ? r.long_factor : r.short_factor;
    const std::vector<float> p = powers(r.theta, r.rotary_dim);
    t.inv_freq.resize(p.size());
    for (size_t i = 0; i < p.size(); i++) t.inv_freq[i] = 1.0f / (ext[i] * p[i]);
    return t;
}

}  // namespace

const char* rope_type_name(RopeType t) {
    switch (t) {
        case RopeType::None: return "none";
        case RopeType::Default: return "default";
        case RopeType::Linear: return "linear";
        case RopeType::Dynamic: return "dynamic";
        case RopeType::Yarn: return "yarn";
        case RopeType::Longrope: return "longrope";
        case RopeType::Llama3: return "llama3";
    }
    return "?";
}

void rope_check(const RopeConfig& r, int head_dim) {
    if (r.type == RopeType::None) return;
    if (!(r.theta > 0) || !std::isfinite(r.theta)) bad(r, "theta must be a positive number");
    if (r.rotary_dim <= 0 || r.rotary_dim % 2 != 0 || r.rotary_dim > head_dim)
        bad(r, "rotary dims " + std::to_string(r.rotary_dim) + " must be even, positive and at most the head dim " +
                   std::to_string(head_dim));
    const bool needs_factor = r.type == RopeType::Linear || r.type == RopeType::Dynamic || r.type == RopeType::Llama3;
    if (needs_factor && !(r.factor > 0)) bad(r, "factor must be positive");
    if (r.factor < 0 || !std::isfinite(r.factor)) bad(r, "factor must be positive");
    const bool needs_original = r.type == RopeType::Llama3 || r.type == RopeType::Yarn || r.type == RopeType::Longrope;
    if (needs_original && r.original_max_positions <= 0) bad(r, "original_max_position_embeddings must be positive");
    if (r.type == RopeType::Dynamic && r.rotary_dim < 4) bad(r, "dynamic NTK needs at least 4 rotary dims");
    if ((r.type == RopeType::Dynamic || ((r.type == RopeType::Yarn || r.type == RopeType::Longrope) && r.factor == 0)) &&
        r.max_positions <= 0)
        bad(r, "max_position_embeddings must be positive");
    if (r.type == RopeType::Llama3) {
        if (!(r.low_freq_factor > 0) || !(r.high_freq_factor > 0) || r.high_freq_factor == r.low_freq_factor)
            bad(r, "low_freq_factor and high_freq_factor must be positive and differ");
    }
    if (r.type == RopeType::Longrope) {
        size_t half = (size_t)r.rotary_dim / 2;
        if (r.short_factor.size() != half || r.long_factor.size() != half)
            bad(r, "short_factor and long_factor need " + std::to_string(half) + " entries each (rotary dims / 2), got " +
                       std::to_string(r.short_factor.size()) + " and " + std::to_string(r.long_factor.size()));
        for (const auto* f : {&r.short_factor, &r.long_factor})
            for (float x : *f)
                if (!(x > 0) || !std::isfinite(x)) bad(r, "short_factor and long_factor must be positive numbers");
    }
}

bool rope_depends_on_length(const RopeConfig& r) { return r.type == RopeType::Dynamic || r.type == RopeType::Longrope; }

bool rope_extends_past_max(const RopeConfig& r) { return r.type == RopeType::Dynamic; }

RopeTable rope_table(const RopeConfig& r, int seq_len) {
    switch (r.type) {
        case RopeType::None:
            return {};
        case RopeType::Default:
            return {plain(r.theta, r.rotary_dim), 1.f};
        case RopeType::Linear: {
            RopeTable t{plain(r.theta, r.rotary_dim), 1.f};
            for (float& x : t.inv_freq) x /= (float)r.factor;
            return t;
        }
        case RopeType::Dynamic: {
            // NTK: past max_positions the base grows with the length; below it, plain RoPE.
            const double d = r.rotary_dim;
            const double len = std::max(seq_len, r.max_positions);
            const double base =
                r.theta * std::pow(r.factor * len / r.max_positions - (r.factor - 1), d / (d - 2));
            return {plain(base, r.rotary_dim), 1.f};
        }
        case RopeType::Yarn:
            return yarn(r);
        case RopeType::Longrope:
            return longrope(r, seq_len);
        case RopeType::Llama3:
            return llama3(r);
    }
    return {};
}

}  // namespace spw
