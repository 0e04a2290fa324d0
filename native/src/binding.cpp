// Node-API glue only: an Engine object whose long operations run on a native
// thread and settle promises; cancellation is a flag checked between units.
#include <napi.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <thread>

#include "arch/family.h"
#include "arch/params.h"
#include "arch/rope.h"
#include "cpu/noise_cpu.h"
#include "spillway/engine.h"
#include "spillway/noise.h"
#include "spillway/nvml.h"
#include "spillway/precision.h"
#include "probe.h"
#include "tier/calibrate.h"
#include "binding_dist.h"
#include "dist/comm.h"
#include "dist/slices.h"
#include "dist/step_share.h"
#include "zo/trainable.h"

namespace {

using namespace spw;

void throw_type(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }

Napi::Value require(const Napi::Object& o, const char* key) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined() || v.IsNull()) throw_type(o.Env(), std::string("missing field '") + key + "'");
    return v;
}

double num(const Napi::Object& o, const char* key) {
    Napi::Value v = require(o, key);
    if (!v.IsNumber()) throw_type(o.Env(), std::string("field '") + key + "' must be a number");
    return v.As<Napi::Number>().DoubleValue();
}

int inum(const Napi::Object& o, const char* key) {
    double d = num(o, key);
    if (d != (double)(int64_t)d) throw_type(o.Env(), std::string("field '") + key + "' must be an integer");
    return (int)d;
}

uint64_t u64(const Napi::Value& v, const char* what) {
    if (v.IsBigInt()) {
        bool lossless = true;
        uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
        if (!lossless) throw_type(v.Env(), std::string(what) + " must fit in 64 unsigned bits");
        return x;
    }
    if (v.IsNumber()) {
        double d = v.As<Napi::Number>().DoubleValue();
        if (d < 0 || d != (double)(uint64_t)d || d > 9007199254740991.0)
            throw_type(v.Env(), std::string(what) + " must be a non-negative safe integer or a bigint");
        return (uint64_t)d;
    }
    throw_type(v.Env(), std::string(what) + " must be a number or a bigint");
    return 0;
}

// An Int32Array's values; `wrong` is the error for any other value.
std::vector<int32_t> int32_array(const Napi::Value& v, const std::string& wrong) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) throw_type(v.Env(), wrong);
    auto a = v.As<Napi::Int32Array>();
    return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<int32_t> ints(const Napi::Object& o, const char* key) {
    return int32_array(require(o, key), std::string("field '") + key + "' must be an Int32Array");
}

// Each element of a plain array of numbers, handed to `each`; `wrong` is the error for any other value.
template <class Each>
void each_number(const Napi::Value& v, const std::string& wrong, Each each) {
    if (!v.IsArray()) throw_type(v.Env(), wrong);
    Napi::Array a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value x = a.Get(i);
        if (!x.IsNumber()) throw_type(v.Env(), wrong);
        each(x.As<Napi::Number>());
    }
}

// Optional fields: absent (undefined or null) leaves the value as it was; present, it must be of its type.
bool present(const Napi::Object& o, const char* key) {
    Napi::Value v = o.Get(key);
    return !v.IsUndefined() && !v.IsNull();
}

void opt_int(const Napi::Object& o, const char* key, int& out) {
    if (present(o, key)) out = inum(o, key);
}

void opt_bool(const Napi::Object& o, const char* key, bool& out) {
    if (!present(o, key)) return;
    Napi::Value v = o.Get(key);
    if (!v.IsBoolean()) throw_type(o.Env(), std::string("field '") + key + "' must be a boolean");
    out = v.As<Napi::Boolean>().Value();
}

std::string str(const Napi::Object& o, const char* key) {
    Napi::Value v = require(o, key);
    if (!v.IsString()) throw_type(o.Env(), std::string("field '") + key + "' must be a string");
    return v.As<Napi::String>().Utf8Value();
}

std::vector<std::string> strings(const Napi::Object& o, const char* key) {
    Napi::Value v = require(o, key);
    if (!v.IsArray()) throw_type(o.Env(), std::string("field '") + key + "' must be an array of strings");
    Napi::Array a = v.As<Napi::Array>();
    std::vector<std::string> out;
    for (uint32_t i = 0; i < a.Length(); i++) {
        Napi::Value x = a.Get(i);
        if (!x.IsString()) throw_type(o.Env(), std::string("field '") + key + "' must be an array of strings");
        out.push_back(x.As<Napi::String>().Utf8Value());
    }
    return out;
}

// The JavaScript spelling of each engine enum (the contract's, electron/common/options.ts): converted
// here and nowhere else.
template <typename E>
struct Name {
    const char* js;
    E value;
};

template <typename E, size_t N>
E named(Napi::Env env, const std::string& s, const Name<E> (&names)[N], const std::string& what) {
    std::string list;
    for (const auto& n : names) {
        if (s == n.js) return n.value;
        list += std::string(list.empty() ? "'" : ", '") + n.js + "'";
    }
    throw_type(env, what + " must be one of " + list + ", not '" + s + "'");
    return names[0].value;
}

template <typename E, size_t N>
E named_field(const Napi::Object& o, const char* key, const Name<E> (&names)[N]) {
    return named(o.Env(), str(o, key), names, std::string("field '") + key + "'");
}

// {name, decay, shape} of a tensor, as tensorNames() and trainableTensors() list them.
Napi::Object tensor_entry(Napi::Env env, const Tensor& t) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", t.name);
    o.Set("decay", t.decay);
    Napi::Array shape = Napi::Array::New(env, t.shape.size());
    for (size_t d = 0; d < t.shape.size(); d++) shape.Set((uint32_t)d, (double)t.shape[d]);
    o.Set("shape", shape);
    return o;
}

constexpr Name<NoiseKind> kNoise[] = {{"gaussian", NOISE_GAUSSIAN}, {"rademacher", NOISE_RADEMACHER}};
constexpr Name<NoiseIsa> kNoiseIsas[] = {{"scalar", NoiseIsa::Scalar}, {"avx2", NoiseIsa::Avx2}, {"avx512", NoiseIsa::Avx512}};
constexpr Name<Estimator> kEstimators[] = {{"mezo", ESTIMATOR_MEZO}, {"fzoo", ESTIMATOR_FZOO}};
constexpr Name<TrainKind> kTrainKinds[] = {
    {"full", TrainKind::Full}, {"sparse", TrainKind::Sparse}, {"lora", TrainKind::Lora}, {"loldu", TrainKind::Loldu},
    {"tokens", TrainKind::Tokens}};
constexpr Name<MasterDtype> kMasters[] = {{"fp32", MASTER_F32}, {"bf16", MASTER_BF16}, {"fp16", MASTER_F16}};
constexpr Name<Home> kHomes[] = {{"device", Home::Device}, {"cpu", Home::Cpu}, {"ssd", Home::Ssd}};
constexpr Name<Act> kActivations[] = {{"relu", Act::Relu}, {"gelu", Act::Gelu}, {"gelu_new", Act::GeluNew}, {"silu", Act::Silu}};

// 'cpu' -> -1, 'cuda' -> 0, 'cuda:N' -> N.
int parse_device_index(Napi::Env env, const std::string& d) {
    if (d == "cpu") return -1;
    if (d == "cuda") return 0;
    if (d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() <= 11 && d.find_first_not_of("0123456789", 5) == std::string::npos)
        return std::stoi(d.substr(5));
    throw_type(env, "device '" + d + "' must be 'cpu', 'cuda' or 'cuda:N'");
    return -1;
}

// 'fp32' | 'tf32' | 'bf16': the GEMM precision of a CUDA backend.
std::string gemm_field(const Napi::Object& o, const char* key) {
    std::string g = str(o, key);
    if (g != "fp32" && g != "tf32" && g != "bf16")
        throw_type(o.Env(), std::string("field '") + key + "' must be 'fp32', 'tf32' or 'bf16', not '" + g + "'");
    return g;
}

// The cores this process may run on (its CPU affinity, as Node's availableParallelism counts them).
int cores_present() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

// A thread count: an integer >= 1, run as at most the cores present. One OS thread per thread asked
// for would otherwise let a typo (threads: 100000) exhaust the machine's process limit.
int threads_field(const Napi::Object& o, const char* key, int fallback) {
    if (!present(o, key)) return fallback;
    double d = num(o, key);
    if (!(d >= 1) || d != std::floor(d) || d > 1e9)
        throw_type(o.Env(), std::string("field '") + key + "' must be an integer >= 1 (this machine has " +
                                std::to_string(cores_present()) + " cores)");
    return (int)std::min<double>(d, cores_present());
}

Batch parse_batch(const Napi::Object& o) {
    Batch b;
    b.tokens = ints(o, "tokens");
    b.seq_start = ints(o, "seqStart");
    b.score_start = ints(o, "scoreStart");
    b.score_end = ints(o, "scoreEnd");
    if (present(o, "seqSpans")) b.span_start = ints(o, "seqSpans");
    b.example_start = ints(o, "exampleStart");
    b.example_kind = ints(o, "exampleKind");
    b.label = ints(o, "label");
    if (b.seq_start.empty() || b.example_start.empty()) throw_type(o.Env(), "batch offsets must not be empty");
    return b;
}

Dtype parse_dtype(Napi::Env env, const std::string& s) {
    if (s == "F32") return Dtype::F32;
    if (s == "F16") return Dtype::F16;
    if (s == "BF16") return Dtype::BF16;
    throw_type(env, "unsupported dtype " + s);
    return Dtype::F32;
}

constexpr Name<RopeType> kRopeTypes[] = {{"default", RopeType::Default}, {"linear", RopeType::Linear},
                                         {"dynamic", RopeType::Dynamic}, {"yarn", RopeType::Yarn},
                                         {"longrope", RopeType::Longrope}, {"llama3", RopeType::Llama3}};

void opt_num(const Napi::Object& o, const char* key, double& out) {
    if (present(o, key)) out = num(o, key);
}

void opt_float(const Napi::Object& o, const char* key, float& out) {
    if (present(o, key)) out = (float)num(o, key);
}

void opt_floats(const Napi::Object& o, const char* key, std::vector<float>& out) {
    if (!present(o, key)) return;
    each_number(o.Get(key), std::string("field '") + key + "' must be an array of numbers",
                [&](Napi::Number x) { out.push_back((float)x.DoubleValue()); });
}

// One rotary table: {type, theta, rotaryDim, ...the scaling's fields} (electron/model/types.ts
// RopeSpec); the numbers are checked by rope_check.
RopeConfig parse_rope(const Napi::Value& v, int max_positions) {
    RopeConfig r;
    if (!v.IsObject() || v.IsArray()) throw_type(v.Env(), "a rotary table must be an object");
    Napi::Object o = v.As<Napi::Object>();
    r.type = named_field(o, "type", kRopeTypes);
    r.theta = num(o, "theta");
    r.rotary_dim = inum(o, "rotaryDim");
    r.max_positions = max_positions;
    opt_num(o, "factor", r.factor);
    opt_int(o, "originalMaxPositions", r.original_max_positions);
    opt_num(o, "lowFreqFactor", r.low_freq_factor);
    opt_num(o, "highFreqFactor", r.high_freq_factor);
    opt_num(o, "betaFast", r.beta_fast);
    opt_num(o, "betaSlow", r.beta_slow);
    opt_bool(o, "truncate", r.truncate);
    opt_num(o, "mscale", r.mscale);
    opt_num(o, "mscaleAllDim", r.mscale_all_dim);
    opt_num(o, "attentionFactor", r.attention_factor);
    opt_floats(o, "shortFactor", r.short_factor);
    opt_floats(o, "longFactor", r.long_factor);
    return r;
}

std::unique_ptr<Model> parse_model(const Napi::Object& spec) {
    Napi::Env env = spec.Env();
    auto model = std::make_unique<Model>();
    Napi::Object c = require(spec, "config").As<Napi::Object>();
    ModelConfig& mc = model->config;
    mc.family = str(c, "family");
    mc.vocab = inum(c, "vocabSize");
    mc.hidden = inum(c, "hidden");
    mc.layers = inum(c, "layers");
    mc.heads = inum(c, "heads");
    mc.kv_heads = inum(c, "kvHeads");
    mc.head_dim = inum(c, "headDim");
    mc.intermediate = inum(c, "intermediate");
    mc.max_positions = inum(c, "maxPositions");
    mc.norm_eps = (float)num(c, "normEps");
    std::string norm = require(c, "norm").As<Napi::String>().Utf8Value();
    if (norm == "layernorm") mc.norm = NormKind::LayerNorm;
    else if (norm == "rmsnorm") mc.norm = NormKind::RmsNorm;
    else if (norm == "rmsnorm_plus1") mc.norm = NormKind::RmsNormPlus1;
    else throw_type(env, "unsupported norm " + norm + " (layernorm, rmsnorm, rmsnorm_plus1)");
    std::string act = require(c, "activation").As<Napi::String>().Utf8Value();
    if (act == "relu") mc.activation = (int)Act::Relu;
    else if (act == "gelu") mc.activation = (int)Act::Gelu;
    else if (act == "gelu_new") mc.activation = (int)Act::GeluNew;
    else if (act == "silu") mc.activation = (int)Act::Silu;
    else throw_type(env, "unsupported activation " + act);
    mc.position_offset = inum(c, "positionOffset");
    if (present(c, "ropes")) {
        Napi::Value v = c.Get("ropes");
        if (!v.IsArray()) throw_type(env, "field 'ropes' must be an array of rotary tables");
        Napi::Array a = v.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++) mc.ropes.push_back(parse_rope(a.Get(i), mc.max_positions));
    }
    // layerAttention: one {window, rope} per block; absent, every block attends causally over
    // the whole sequence with the first rotary table (if any).
    if (present(c, "layerAttention")) {
        Napi::Value v = c.Get("layerAttention");
        if (!v.IsArray()) throw_type(env, "field 'layerAttention' must be an array of {window, rope}");
        Napi::Array a = v.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); i++) {
            Napi::Value e = a.Get(i);
            if (!e.IsObject()) throw_type(env, "field 'layerAttention' must be an array of {window, rope}");
            Napi::Object o = e.As<Napi::Object>();
            mc.layer_attention.push_back({inum(o, "window"), inum(o, "rope")});
        }
    } else {
        mc.layer_attention.assign((size_t)std::max(0, mc.layers), {0, mc.ropes.empty() ? -1 : 0});
    }
    mc.tied = require(c, "tiedEmbeddings").As<Napi::Boolean>().Value();
    opt_bool(c, "parallelResidual", mc.parallel_residual);
    opt_bool(c, "postNorm", mc.post_norm);
    opt_bool(c, "finalNorm", mc.final_norm);
    mc.embed_dim = mc.hidden;
    opt_int(c, "embedDim", mc.embed_dim);
    opt_float(c, "embedScale", mc.embed_scale);
    opt_float(c, "queryPreAttnScalar", mc.attn_scalar);
    opt_float(c, "attnSoftcap", mc.attn_softcap);
    opt_float(c, "finalSoftcap", mc.final_softcap);
    if (mc.heads <= 0 || mc.kv_heads <= 0 || mc.heads % mc.kv_heads != 0)
        throw_type(env, "heads must be a positive multiple of kvHeads");
    if (mc.layers <= 0) throw_type(env, "layers must be positive");

    Napi::Array units = require(spec, "units").As<Napi::Array>();
    std::map<std::string, int> by_name;
    model->params.blocks.resize((size_t)mc.layers);
    int blocks = 0;
    try {
        for (uint32_t ui = 0; ui < units.Length(); ui++) {
            Napi::Object u = units.Get(ui).As<Napi::Object>();
            Unit unit;
            std::string kind = require(u, "kind").As<Napi::String>().Utf8Value();
            unit.kind = kind == "embed" ? UnitKind::Embed : kind == "head" ? UnitKind::Head : UnitKind::Block;
            unit.index = inum(u, "index");
            blocks += unit.kind == UnitKind::Block;
            Napi::Object ts = require(u, "tensors").As<Napi::Object>();
            Napi::Array roles = ts.GetPropertyNames();
            for (uint32_t ri = 0; ri < roles.Length(); ri++) {
                std::string role = roles.Get(ri).As<Napi::String>().Utf8Value();
                Napi::Object t = ts.Get(role).As<Napi::Object>();
                std::string name = require(t, "name").As<Napi::String>().Utf8Value();
                auto found = by_name.find(name);
                int index = found != by_name.end() ? found->second : (int)model->tensors.size();
                if (found == by_name.end()) {
                    Tensor tensor;
                    tensor.name = name;
                    tensor.id = fnv1a32(name.data(), name.size());
                    Napi::Array shape = require(t, "shape").As<Napi::Array>();
                    for (uint32_t d = 0; d < shape.Length(); d++)
                        tensor.shape.push_back((int64_t)shape.Get(d).As<Napi::Number>().Int64Value());
                    tensor.transposed = require(t, "transposed").As<Napi::Boolean>().Value();
                    tensor.decay = !tensor_is_no_decay(name);
                    tensor.source.file = require(t, "file").As<Napi::String>().Utf8Value();
                    tensor.source.offset = u64(require(t, "offset"), "offset");
                    tensor.source.nbytes = u64(require(t, "nbytes"), "nbytes");
                    tensor.source.dtype = parse_dtype(env, require(t, "dtype").As<Napi::String>().Utf8Value());
                    for (auto& other : model->tensors)
                        if (other.id == tensor.id)
                            throw_type(env, "tensors " + other.name + " and " + name + " share a noise id; rename one");
                    by_name[name] = index;
                    model->tensors.push_back(std::move(tensor));
                }
                if (std::find(unit.tensors.begin(), unit.tensors.end(), index) == unit.tensors.end())
                    unit.tensors.push_back(index);
                bind_role(model->params, unit, role, index);
            }
            model->units.push_back(std::move(unit));
        }
        if (model->units.size() < 2 || model->units.front().kind != UnitKind::Embed ||
            model->units.back().kind != UnitKind::Head)
            throw std::runtime_error("units must start with the embeddings and end with the head");
        if (blocks != mc.layers)
            throw std::runtime_error("the spec has " + std::to_string(blocks) + " blocks; the config says " +
                                     std::to_string(mc.layers) + " layers");
        HeadParams& head = model->params.head;
        if (mc.tied && head.lm_head >= 0) throw std::runtime_error("a tied head has no 'lm_head' of its own");
        if (mc.tied) head.lm_head = model->params.embed.tok;
        check_params(family_of(mc.family), *model);
    } catch (const std::runtime_error& e) {
        throw_type(env, e.what());
    }
    return model;
}

Napi::Object times_to_js(Napi::Env env, const PhaseTimes& t) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("noiseMs", t.noise_ms);
    o.Set("ioMs", t.io_ms);
    o.Set("forwardMs", t.forward_ms);
    o.Set("headMs", t.head_ms);
    o.Set("updateMs", t.update_ms);
    o.Set("totalMs", t.total_ms);
    o.Set("exchangeMs", t.exchange_ms);
    return o;
}

// A step's result and, shared among ranks, every rank's timings.
struct StepOut {
    StepResult step;
    std::vector<dist::RankTimes> ranks;
};

template <typename T>
Napi::Array array_js(Napi::Env env, const std::vector<T>& v) {
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set((uint32_t)i, v[i]);
    return a;
}

// Runs fn on a worker thread and resolves with to_js(result); errors reject with their message.
template <typename Result>
class Job : public Napi::AsyncWorker {
public:
    using Fn = std::function<Result()>;
    using ToJs = std::function<Napi::Value(Napi::Env, const Result&)>;
    Job(Napi::Env env, std::atomic<bool>* busy, Fn fn, ToJs to_js)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), busy_(busy), fn_(std::move(fn)),
          to_js_(std::move(to_js)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
        try {
            result_ = fn_();
        } catch (const CancelledError&) {
            code_ = "ECANCELLED";
            SetError("cancelled");
        } catch (const std::bad_alloc&) {
            SetError("out of memory");
        } catch (const DeviceOutOfMemory& e) {
            code_ = "EDEVICEMEM";
            SetError(e.what());
        } catch (const DeviceFailed& e) {
            code_ = "EDEVICELOST";
            SetError(e.what());
        } catch (const std::exception& e) {
            SetError(e.what());
        }
    }
    void OnOK() override {
        busy_->store(false);
        deferred_.Resolve(to_js_(Env(), result_));
    }
    void OnError(const Napi::Error& e) override {
        busy_->store(false);
        Napi::Error err = Napi::Error::New(Env(), e.Message());
        err.Set("code", Napi::String::New(Env(), code_));
        deferred_.Reject(err.Value());
    }

private:
    Napi::Promise::Deferred deferred_;
    std::atomic<bool>* busy_;
    Fn fn_;
    ToJs to_js_;
    Result result_{};
    // ECANCELLED, EDEVICEMEM (out of device memory or of its budget), EDEVICELOST (the device failed), else EENGINE.
    const char* code_ = "EENGINE";
};

// Queues fn on a worker thread; the promise settles with to_js(its result), or rejects with its error.
template <typename Result>
Napi::Promise run_job(Napi::Env env, std::atomic<bool>* busy, typename Job<Result>::Fn fn, typename Job<Result>::ToJs to_js) {
    auto* job = new Job<Result>(env, busy, std::move(fn), std::move(to_js));
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
}

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
public:
    static Napi::Function Init(Napi::Env env) {
        return DefineClass(env, "Engine",
                           {InstanceMethod("load", &EngineWrap::Load), InstanceMethod("step", &EngineWrap::Step),
                            InstanceMethod("score", &EngineWrap::Score), InstanceMethod("cancel", &EngineWrap::Cancel),
                            InstanceMethod("decodeBegin", &EngineWrap::DecodeBegin),
                            InstanceMethod("decodeNext", &EngineWrap::DecodeNext),
                            InstanceMethod("decodeEnd", &EngineWrap::DecodeEnd),
                            InstanceMethod("tensorNames", &EngineWrap::TensorNames),
                            InstanceMethod("getTensor", &EngineWrap::GetTensor),
                            InstanceMethod("trainableTensors", &EngineWrap::TrainableTensors),
                            InstanceMethod("setTensor", &EngineWrap::SetTensor),
                            InstanceMethod("info", &EngineWrap::Info),
                            InstanceMethod("close", &EngineWrap::Close)});
    }

    explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
        Napi::Env env = info.Env();
        if (info.Length() > 0 && info[0].IsObject()) {
            Napi::Object o = info[0].As<Napi::Object>();
            threads_ = threads_field(o, "threads", 1);
            if (present(o, "deviceMemory")) {
                double v = num(o, "deviceMemory");
                if (!(v >= 0)) throw_type(env, "deviceMemory must be a byte count >= 0");
                memory_budget_ = (size_t)v;
            }
            if (present(o, "device")) use_device(env, str(o, "device"));
            if (present(o, "gemm")) gemm_ = gemm_field(o, "gemm");
        }
    }

private:
    void claim(Napi::Env env) {
        bool expected = false;
        if (!busy_.compare_exchange_strong(expected, true)) busy_error(env);
        cancel_.store(false);
    }
    void not_busy(Napi::Env env) {
        if (busy_.load()) busy_error(env);
    }
    [[noreturn]] static void busy_error(Napi::Env env) {
        throw Napi::Error::New(env, "the engine is busy with another operation");
    }
    // Claims the engine and runs work(engine, cancel flag) on a worker thread; the promise settles
    // with to_js(its result).
    template <typename Result, typename Work>
    Napi::Promise engine_job(Napi::Env env, Work work, typename Job<Result>::ToJs to_js) {
        claim(env);
        Engine* e = engine_.get();
        std::atomic<bool>* cancel = &cancel_;
        return run_job<Result>(env, &busy_, [e, cancel, work]() { return work(e, cancel); }, std::move(to_js));
    }
    void need_model(Napi::Env env) {
        if (!engine_) throw Napi::Error::New(env, "no model loaded");
    }

    // 'cpu' (default), 'cuda' (device 0) or 'cuda:N'. CUDA must be compiled in and the device present.
    void use_device(Napi::Env env, const std::string& d) {
        int index = parse_device_index(env, d);
        if (index < 0) {
            cuda_device_ = -1;
            return;
        }
        CudaReport r = cuda_report();
        if (!r.compiled)
            throw Napi::Error::New(env, "device '" + d + "' asked for, but this build of the engine has no CUDA backend "
                                        "(CUDA not compiled in: nvcc was not found when it was built)");
        if (r.state != "ok")
            throw Napi::Error::New(env, "device '" + d + "' asked for, but CUDA reports " + r.state +
                                            (r.detail.empty() ? "" : " (" + r.detail + ")"));
        if (index >= (int)r.devices.size())
            throw Napi::Error::New(env, "device '" + d + "' asked for, but there " +
                                            (r.devices.size() == 1 ? std::string("is 1 CUDA device")
                                                                   : "are " + std::to_string(r.devices.size()) +
                                                                         " CUDA devices"));
        cuda_device_ = index;
    }

    Napi::Value Load(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "load(spec) needs a model spec object");
        std::shared_ptr<Model> model(parse_model(info[0].As<Napi::Object>()).release());
        // load(spec, {homes: ('device' | 'cpu' | 'ssd')[] per unit, spillDirs, deviceUpdate: boolean[] per
        //             unit, writeBackEvery, prefetch, stageSlots, masters: 'fp32' | 'bf16' | 'fp16',
        //             sliced: {timeoutMs}: the sliced transfer among this machine's ranks, after distInit})
        TierOptions tiers;
        double slice_timeout_s = 0;
        if (info.Length() > 1 && info[1].IsObject()) {
            Napi::Object t = info[1].As<Napi::Object>();
            if (present(t, "homes"))
                for (const std::string& h : strings(t, "homes")) tiers.homes.push_back((int)named(env, h, kHomes, "a home"));
            if (present(t, "spillDirs")) tiers.spill_dirs = strings(t, "spillDirs");
            if (present(t, "deviceUpdate")) {
                Napi::Value du = t.Get("deviceUpdate");
                if (!du.IsArray()) throw_type(env, "field 'deviceUpdate' must be an array of booleans");
                Napi::Array a = du.As<Napi::Array>();
                for (uint32_t i = 0; i < a.Length(); i++) tiers.device_update.push_back(a.Get(i).ToBoolean().Value() ? 1 : 0);
            }
            if (present(t, "masters")) tiers.master_dtype = named_field(t, "masters", kMasters);
            opt_int(t, "stageSlots", tiers.stage_slots);
            opt_int(t, "writeBackEvery", tiers.write_back_every);
            opt_int(t, "prefetch", tiers.prefetch);
            if (present(t, "sliced")) {
                if (!dist::Comm::current()) throw Napi::Error::New(env, "the sliced transfer needs the ranks' world: call distInit() first");
                Napi::Value sv = t.Get("sliced");
                if (!sv.IsObject()) throw_type(env, "field 'sliced' must be an object {timeoutMs}");
                slice_timeout_s = num(sv.As<Napi::Object>(), "timeoutMs") / 1000.0;
            }
        }
        // train: {kind: 'full' | 'sparse' | 'lora' | 'loldu' | 'tokens', rank, alpha, targets: string[], fraction, seed,
        //         tokens: Int32Array (the embedding rows that train)}
        TrainSpec train;
        if (info.Length() > 2 && info[2].IsObject()) {
            Napi::Object o = info[2].As<Napi::Object>();
            train.kind = named_field(o, "kind", kTrainKinds);
            opt_int(o, "rank", train.rank);
            double alpha = train.alpha;
            opt_num(o, "alpha", alpha);
            train.alpha = (float)alpha;
            if (present(o, "targets")) train.targets = strings(o, "targets");
            opt_num(o, "fraction", train.fraction);
            if (present(o, "seed")) train.seed = u64(o.Get("seed"), "seed");
            if (present(o, "tokens")) train.tokens = ints(o, "tokens");
        }
        claim(env);
        engine_.reset();
        int threads = threads_;
        int cuda_device = cuda_device_;
        size_t memory_budget = memory_budget_;
        std::string gemm = gemm_;
        auto* self = this;
        return run_job<std::shared_ptr<Engine>>(
            env, &busy_,
            [model, threads, cuda_device, tiers, memory_budget, gemm, slice_timeout_s, train]() mutable {
                std::unique_ptr<Backend> backend;
#ifdef SPW_WITH_CUDA
                if (cuda_device >= 0) backend = make_cuda_backend(cuda_device, gemm);
#endif
                (void)gemm;  // the CPU backend computes in fp32
                if (!backend) backend = make_cpu_backend(threads);
                backend->set_memory_budget(memory_budget);
                // Sliced: the machine's first rank fills the shared homes of CPU-homed blocks, the
                // others load none of them.
                if (slice_timeout_s > 0) tiers.slices = dist::make_slice_group(*dist::Comm::current(), *backend, slice_timeout_s);
                const bool shared_elsewhere = tiers.slices && tiers.slices->size() > 1 && tiers.slices->rank() != 0;
                // SSD-homed blocks go from the checkpoint to the spill file unit by
                // unit: never all in host memory at once.
                std::vector<bool> skip(model->tensors.size(), false);
                for (size_t ui = 0; ui < model->units.size() && ui < tiers.homes.size(); ui++) {
                    bool away = tiers.homes[ui] == (int)Home::Ssd || (shared_elsewhere && tiers.homes[ui] == (int)Home::Cpu);
                    if (away && model->units[ui].kind == UnitKind::Block)
                        for (int ti : model->units[ui].tensors) skip[(size_t)ti] = true;
                }
                model_load_masters(*model, nullptr, &skip);
                auto owned = std::make_unique<Model>();
                std::swap(owned->config, model->config);
                std::swap(owned->tensors, model->tensors);
                std::swap(owned->units, model->units);
                std::swap(owned->params, model->params);
                for (auto& t : owned->tensors) owned->parameter_count += t.numel;
                return std::make_shared<Engine>(std::move(backend), std::move(owned), tiers, &train);
            },
            [self](Napi::Env env, const std::shared_ptr<Engine>& e) {
                self->engine_ = e;
                return self->InfoObject(env);
            });
    }

    Napi::Value Step(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        need_model(env);
        if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject())
            throw_type(env, "step(batch, params) needs two objects");
        Batch batch = parse_batch(info[0].As<Napi::Object>());
        Napi::Object po = info[1].As<Napi::Object>();
        StepParams p;
        p.run_seed = u64(require(po, "seed"), "seed");
        p.step = u64(require(po, "step"), "step");
        if (present(po, "estimator")) p.estimator = named_field(po, "estimator", kEstimators);
        p.q = inum(po, "q");
        p.lr = (float)num(po, "lr");
        p.eps = (float)num(po, "eps");
        p.weight_decay = (float)num(po, "weightDecay");
        p.noise = named_field(po, "noise", kNoise);
        // dist: {groups, globalExamples, timeoutMs}: this rank's share of a step of the job's ranks
        // (src/dist): its group's perturbations, its shard of the batch, the losses exchanged.
        auto shared = std::make_shared<dist::SharedStep>();
        bool is_shared = false;
        Napi::Value dv = po.Get("dist");
        if (dv.IsObject()) {
            Napi::Object d = dv.As<Napi::Object>();
            dist::Comm* comm = dist::Comm::current();
            if (!comm) throw Napi::Error::New(env, "a shared step needs the ranks' world: call distInit() first");
            try {
                dist::StepLayout layout = dist::StepLayout::make(comm->size(), inum(d, "groups"));
                dist::make_shared_step(*shared, *comm, layout, p.q, inum(d, "globalExamples"), batch.num_examples(), batch.num_tokens(),
                                       num(d, "timeoutMs") / 1000.0);
            } catch (const std::runtime_error& err) {
                throw Napi::Error::New(env, err.what());
            }
            is_shared = true;
        }
        return engine_job<StepOut>(
            env,
            [batch, p, shared, is_shared](Engine* e, std::atomic<bool>* cancel) {
                StepOut out;
                out.step = e->step(batch, p, cancel, is_shared ? &shared->share : nullptr);
                out.ranks = shared->ranks;
                return out;
            },
            [](Napi::Env env, const StepOut& out) -> Napi::Value {
                const StepResult& r = out.step;
                Napi::Object o = Napi::Object::New(env);
                Napi::Array seeds = Napi::Array::New(env, r.seeds.size());
                for (size_t i = 0; i < r.seeds.size(); i++) seeds.Set((uint32_t)i, Napi::BigInt::New(env, r.seeds[i]));
                o.Set("seeds", seeds);
                o.Set("lossPlus", array_js(env, r.loss_plus));
                o.Set("lossMinus", array_js(env, r.loss_minus));
                o.Set("projectedGrad", array_js(env, r.projected_grad));
                o.Set("coef", array_js(env, r.coef));
                o.Set("skipped", r.skipped);
                o.Set("loss", r.loss);
                o.Set("sigma", r.sigma);
                o.Set("times", times_to_js(env, r.times));
                if (!out.ranks.empty()) {
                    Napi::Array ranks = Napi::Array::New(env, out.ranks.size());
                    for (size_t i = 0; i < out.ranks.size(); i++) {
                        const dist::RankTimes& t = out.ranks[i];
                        Napi::Object x = Napi::Object::New(env);
                        x.Set("computeMs", t.compute_ms);
                        x.Set("forwardMs", t.forward_ms);
                        x.Set("ioMs", t.io_ms);
                        x.Set("noiseMs", t.noise_ms);
                        x.Set("headMs", t.head_ms);
                        x.Set("examples", t.examples);
                        x.Set("tokens", t.tokens);
                        ranks.Set((uint32_t)i, x);
                    }
                    o.Set("ranks", ranks);
                }
                return o;
            });
    }

    Napi::Value Score(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        need_model(env);
        if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "score(batch) needs a batch object");
        Batch batch = parse_batch(info[0].As<Napi::Object>());
        return engine_job<ScoreResult>(
            env, [batch](Engine* e, std::atomic<bool>* cancel) { return e->score(batch, cancel); },
            [](Napi::Env env, const ScoreResult& r) -> Napi::Value {
                Napi::Object o = Napi::Object::New(env);
                o.Set("exampleLoss", array_js(env, r.example_loss));
                o.Set("correct", array_js(env, r.correct));
                o.Set("candidateScores", array_js(env, r.candidate_scores));
                o.Set("scoredTokens", array_js(env, r.scored_tokens));
                Napi::Float32Array lp = Napi::Float32Array::New(env, r.token_logprobs.size());
                if (!r.token_logprobs.empty())
                    std::memcpy(lp.Data(), r.token_logprobs.data(), r.token_logprobs.size() * sizeof(float));
                o.Set("tokenLogprobs", lp);
                o.Set("loss", r.loss);
                o.Set("times", times_to_js(env, r.times));
                return o;
            });
    }

    // decodeBegin({prompts: Int32Array[], maxNewTokens, temperature?, topK?, topP?, repetitionPenalty?,
    //              seed?, eos?: Int32Array, logits?}): the prefill and each prompt's first token.
    Napi::Value DecodeBegin(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        need_model(env);
        if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "decodeBegin(request) needs a request object");
        Napi::Object o = info[0].As<Napi::Object>();
        DecodeRequest r;
        Napi::Value pv = require(o, "prompts");
        if (!pv.IsArray()) throw_type(env, "field 'prompts' must be an array of Int32Arrays");
        Napi::Array pa = pv.As<Napi::Array>();
        for (uint32_t i = 0; i < pa.Length(); i++)
            r.prompts.push_back(int32_array(pa.Get(i), "field 'prompts' must be an array of Int32Arrays"));
        r.max_new_tokens = inum(o, "maxNewTokens");
        if (present(o, "temperature")) r.sampling.temperature = (float)num(o, "temperature");
        opt_int(o, "topK", r.sampling.top_k);
        if (present(o, "topP")) r.sampling.top_p = (float)num(o, "topP");
        if (present(o, "repetitionPenalty")) r.sampling.repetition_penalty = (float)num(o, "repetitionPenalty");
        if (present(o, "seed")) r.sampling.seed = u64(o.Get("seed"), "seed");
        if (present(o, "eos")) r.eos = ints(o, "eos");
        opt_bool(o, "logits", r.logits);
        return engine_job<DecodeStep>(
            env, [r](Engine* e, std::atomic<bool>* cancel) { return e->decode_begin(r, cancel); }, decode_step_js);
    }

    // decodeNext(stop?: number[]): one more token of every unfinished sequence, after finishing those in stop.
    Napi::Value DecodeNext(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        need_model(env);
        std::vector<int32_t> stop;
        if (info.Length() > 0 && !info[0].IsUndefined() && !info[0].IsNull())
            each_number(info[0], "decodeNext(stop) takes an array of sequence indices", [&](Napi::Number x) {
                // An index, not a number truncated to one (1.5 stopped sequence 1).
                const double d = x.DoubleValue();
                if (!(d >= 0) || d != std::floor(d) || d > 2147483647.0)
                    throw_type(env, "decodeNext(stop) takes an array of sequence indices: " + x.ToString().Utf8Value() +
                                        " is not one (an integer >= 0)");
                stop.push_back((int32_t)d);
            });
        return engine_job<DecodeStep>(
            env, [stop](Engine* e, std::atomic<bool>* cancel) { return e->decode_next(stop, cancel); }, decode_step_js);
    }

    // Frees the KV cache now.
    Napi::Value DecodeEnd(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        not_busy(env);
        if (engine_) engine_->decode_end();
        return env.Undefined();
    }

    // {tokens: Int32Array (-1: finished before this step), finish: ('eos' | 'length' | 'stopped' | null)[],
    //  logits?: Float32Array [nseq * V], times}
    static Napi::Value decode_step_js(Napi::Env env, const DecodeStep& r) {
        Napi::Object o = Napi::Object::New(env);
        Napi::Int32Array tokens = Napi::Int32Array::New(env, r.tokens.size());
        for (size_t i = 0; i < r.tokens.size(); i++) tokens[i] = r.tokens[i];
        o.Set("tokens", tokens);
        Napi::Array finish = Napi::Array::New(env, r.finish.size());
        for (size_t i = 0; i < r.finish.size(); i++) {
            const char* name = r.finish[i] == FINISH_EOS ? "eos" : r.finish[i] == FINISH_LENGTH ? "length"
                               : r.finish[i] == FINISH_STOPPED ? "stopped" : nullptr;
            finish.Set((uint32_t)i, name ? Napi::String::New(env, name).As<Napi::Value>() : env.Null());
        }
        o.Set("finish", finish);
        if (!r.logits.empty()) {
            Napi::Float32Array lg = Napi::Float32Array::New(env, r.logits.size());
            std::memcpy(lg.Data(), r.logits.data(), r.logits.size() * sizeof(float));
            o.Set("logits", lg);
        }
        o.Set("times", times_to_js(env, r.times));
        return o;
    }

    Napi::Value Cancel(const Napi::CallbackInfo& info) {
        cancel_.store(true);
        return info.Env().Undefined();
    }

    Napi::Value TensorNames(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        need_model(env);
        const Model& m = engine_->model();
        Napi::Array a = Napi::Array::New(env, m.tensors.size());
        for (size_t i = 0; i < m.tensors.size(); i++) a.Set((uint32_t)i, tensor_entry(env, m.tensors[i]));
        return a;
    }

    // A model tensor, or an adapter's (trainableTensors()).
    Napi::Value GetTensor(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        need_model(env);
        not_busy(env);
        if (info.Length() < 1 || !info[0].IsString()) throw_type(env, "getTensor(name) needs a name");
        const std::string name = info[0].As<Napi::String>().Utf8Value();
        const Tensor* t = engine_->model().tensor(name);
        int adapter = t ? -1 : engine_->trainable().find(name);
        if (!t && adapter < 0) throw Napi::Error::New(env, "no tensor named " + name);
        size_t numel = t ? t->numel : engine_->trainable().tensors()[(size_t)adapter].numel;
        Napi::Float32Array out = Napi::Float32Array::New(env, numel);
        try {
            if (t)
                engine_->read_tensor(*t, out.Data());
            else
                engine_->trainable().read((size_t)adapter, out.Data());
        } catch (const std::exception& e) {
            throw Napi::Error::New(env, e.what());
        }
        return out;
    }

    // The adapters' tensors (lora, loldu, tokens): [{name, shape, frozen, decay}], in the order they
    // were made; a token-rows delta also has rows: the embedding rows it adds to, in its row order.
    Napi::Value TrainableTensors(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        need_model(env);
        const Trainable& tr = engine_->trainable();
        const std::vector<Tensor>& ts = tr.tensors();
        Napi::Array a = Napi::Array::New(env, ts.size());
        for (size_t i = 0; i < ts.size(); i++) {
            Napi::Object t = tensor_entry(env, ts[i]);
            t.Set("frozen", ts[i].frozen);
            if (tr.spec().kind == TrainKind::Tokens) {
                const std::vector<int32_t>& rows = tr.spec().tokens;
                Napi::Array r = Napi::Array::New(env, rows.size());
                for (size_t j = 0; j < rows.size(); j++) r.Set((uint32_t)j, rows[j]);
                t.Set("rows", r);
            }
            a.Set((uint32_t)i, t);
        }
        return a;
    }

    // setTensor(name, Float32Array): an adapter tensor's values (resuming a run from its adapters).
    Napi::Value SetTensor(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        need_model(env);
        not_busy(env);
        if (info.Length() < 2 || !info[0].IsString() || !info[1].IsTypedArray() ||
            info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
            throw_type(env, "setTensor(name, values) needs a name and a Float32Array");
        const std::string name = info[0].As<Napi::String>().Utf8Value();
        int i = engine_->trainable().find(name);
        if (i < 0) throw Napi::Error::New(env, "no adapter tensor named " + name + " (only adapters can be set)");
        auto v = info[1].As<Napi::Float32Array>();
        size_t numel = engine_->trainable().tensors()[(size_t)i].numel;
        if (v.ElementLength() != numel)
            throw Napi::Error::New(env, name + " holds " + std::to_string(numel) + " values, not " + std::to_string(v.ElementLength()));
        engine_->trainable().write((size_t)i, v.Data());
        return env.Undefined();
    }

    Napi::Value InfoObject(Napi::Env env) {
        Napi::Object o = Napi::Object::New(env);
        if (!engine_) return o;
        o.Set("backend", engine_->backend().name());
        o.Set("device", cuda_device_ >= 0 ? "cuda:" + std::to_string(cuda_device_) : std::string("cpu"));
        o.Set("threads", engine_->backend().threads());
        o.Set("parameters", (double)engine_->model().parameter_count);
        o.Set("tensors", (double)engine_->model().tensors.size());
        o.Set("units", (double)engine_->model().units.size());
        Napi::Object tr = Napi::Object::New(env);
        tr.Set("elements", (double)engine_->trainable().trainable_elements());
        tr.Set("setupSeconds", engine_->trainable().setup_seconds());
        o.Set("trainable", tr);
        TierStats ts = engine_->tier_stats();
        Napi::Object t = Napi::Object::New(env);
        t.Set("deviceWeightBytes", (double)ts.device_weight_bytes);
        t.Set("deviceStageBytes", (double)ts.device_stage_bytes);
        t.Set("cpuBytes", (double)ts.cpu_bytes);
        t.Set("ssdBytes", (double)ts.ssd_bytes);
        t.Set("h2dBytes", (double)ts.h2d_bytes);
        t.Set("ssdReadBytes", (double)ts.ssd_read_bytes);
        t.Set("ssdWriteBytes", (double)ts.ssd_write_bytes);
        t.Set("spillFile", ts.spill_file);
        Napi::Array files = Napi::Array::New(env, ts.spill_files.size());
        for (size_t i = 0; i < ts.spill_files.size(); i++) files.Set((uint32_t)i, ts.spill_files[i]);
        t.Set("spillFiles", files);
        t.Set("d2hBytes", (double)ts.d2h_bytes);
        t.Set("scratchBytes", (double)ts.scratch_bytes);
        t.Set("adapterBytes", (double)ts.adapter_bytes);
        t.Set("deviceMemoryBudget", (double)engine_->backend().memory_budget());
        t.Set("deviceMemoryInUse", (double)engine_->backend().memory_in_use());
        t.Set("deviceMemoryPeak", (double)engine_->backend().memory_peak());
        t.Set("stageSlots", ts.stage_slots);
        t.Set("masters", ts.master_dtype);  // master_dtype_name: the same spelling as kMasters
        t.Set("ioPath", ts.io_path);
        t.Set("sliceRanks", ts.slice_ranks);
        t.Set("sliceTransport", ts.slice_transport);
        o.Set("tiers", t);
        return o;
    }

    Napi::Value Info(const Napi::CallbackInfo& info) { return InfoObject(info.Env()); }

    // Releases the model, device memory and the spill file now rather than at garbage
    // collection (which a process that exits never reaches).
    Napi::Value Close(const Napi::CallbackInfo& info) {
        Napi::Env env = info.Env();
        not_busy(env);
        // A rank whose exchange failed is about to be aborted: a late message may still land in
        // the engine's buffers, which therefore stay.
        if (dist_failed()) return env.Undefined();
        engine_.reset();
        return env.Undefined();
    }

    std::shared_ptr<Engine> engine_;
    std::atomic<bool> busy_{false};
    std::atomic<bool> cancel_{false};
    int threads_ = 1;
    int cuda_device_ = -1;  // -1: the CPU backend
    size_t memory_budget_ = 0;  // device memory budget, bytes (0: none)
    std::string gemm_;          // a CUDA backend's GEMM precision (empty: fp32; $SPILLWAY_GEMM overrides)
};

Napi::Value Noise(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw_type(env, "noise({seed, id, start, count, kind})");
    Napi::Object o = info[0].As<Napi::Object>();
    uint64_t seed = u64(require(o, "seed"), "seed");
    uint32_t id = (uint32_t)u64(require(o, "id"), "id");
    uint64_t start = u64(require(o, "start"), "start");
    uint32_t count = (uint32_t)inum(o, "count");
    int k = named_field(o, "kind", kNoise);
    Napi::Float32Array out = Napi::Float32Array::New(env, count);
    Napi::Value bulk = o.Get("bulk");
    if (present(o, "isa")) {
        // One of the CPU's bulk generators by name, so that tests compare each with the definition.
        NoiseIsa isa = named_field(o, "isa", kNoiseIsas);
        if (!noise_isa_available(isa)) throw_type(env, "noise: isa '" + str(o, "isa") + "' is not available on this CPU");
        if (start % 4 != 0) throw_type(env, "bulk noise needs start to be a multiple of 4");
        noise_range_isa(isa, out.Data(), count, seed, id, k, start);
    } else if (bulk.IsBoolean() && bulk.As<Napi::Boolean>().Value()) {
        // The CPU backend's bulk generator (the one training uses), for tests.
        if (start % 4 != 0) throw_type(env, "bulk noise needs start to be a multiple of 4");
        std::unique_ptr<Backend> cpu;
        try {
            cpu = make_cpu_backend(2, false);
        } catch (const std::exception& e) {
            throw Napi::Error::New(env, e.what());
        }
        cpu->noise_fill(out.Data(), count, seed, id, k, start);
    } else {
        for (uint32_t i = 0; i < count; i++) out[i] = noise_at(seed, id, start + i, k);
    }
    return out;
}

// The bulk noise generators this CPU can run, by the names noise({isa}) takes.
Napi::Value NoiseIsas(const Napi::CallbackInfo& info) {
    Napi::Array out = Napi::Array::New(info.Env());
    uint32_t n = 0;
    for (const auto& e : kNoiseIsas)
        if (noise_isa_available(e.value)) out.Set(n++, e.js);
    return out;
}

Napi::Value Fnv(const Napi::CallbackInfo& info) {
    std::string s = info[0].As<Napi::String>().Utf8Value();
    return Napi::Number::New(info.Env(), fnv1a32(s.data(), s.size()));
}

Napi::Value StepSeed(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3) throw_type(env, "stepSeed(runSeed, step, j)");
    return Napi::BigInt::New(env, step_seed(u64(info[0], "runSeed"), u64(info[1], "step"), u64(info[2], "j")));
}

Napi::Value Philox(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Uint32Array in = info[0].As<Napi::Uint32Array>();  // c0..c3, k0, k1
    if (in.ElementLength() != 6) throw_type(env, "philox needs 6 words");
    Philox4 r = philox4x32_10(in[0], in[1], in[2], in[3], in[4], in[5]);
    Napi::Uint32Array out = Napi::Uint32Array::New(env, 4);
    for (int i = 0; i < 4; i++) out[(size_t)i] = r.x[i];
    return out;
}

// {compiled, state: 'ok' | 'CUDA not compiled in' | 'no device', detail, driverVersion, runtimeVersion,
//  devices: [{index, name, totalBytes, freeBytes (null without NVML), computeCapability, multiprocessors, pciBusId}]}
Napi::Value CudaDevices(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CudaReport r = cuda_report();
    Napi::Object o = Napi::Object::New(env);
    o.Set("compiled", r.compiled);
    o.Set("state", r.state);
    o.Set("detail", r.detail);
    o.Set("driverVersion", r.driver_version);
    o.Set("runtimeVersion", r.runtime_version);
    Napi::Array devs = Napi::Array::New(env, r.devices.size());
    for (size_t i = 0; i < r.devices.size(); i++) {
        const CudaDeviceInfo& d = r.devices[i];
        Napi::Object x = Napi::Object::New(env);
        x.Set("index", d.index);
        x.Set("name", d.name);
        x.Set("totalBytes", (double)d.total_bytes);
        if (d.free_bytes >= 0)
            x.Set("freeBytes", (double)d.free_bytes);
        else
            x.Set("freeBytes", env.Null());
        x.Set("computeCapability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor));
        x.Set("multiprocessors", d.multiprocessors);
        x.Set("pciBusId", d.pci_bus_id.empty() ? env.Null() : Napi::String::New(env, d.pci_bus_id).As<Napi::Value>());
        devs.Set((uint32_t)i, x);
    }
    o.Set("devices", devs);
    return o;
}

// nvmlSample(): Promise<{state: 'ok' | 'absent' | 'unavailable', reason?, devices: [{index, name, pciBusId,
//  utilization (0..1), memoryUsedBytes, memoryTotalBytes, pcieRxBytesPerS, pcieTxBytesPerS, powerW, temperatureC}]}>,
// a value NVML cannot give being null. Runs on a worker thread: the PCIe counters block ~20 ms each.
Napi::Value NvmlSample(const Napi::CallbackInfo& info) {
    static std::atomic<bool> unused{false};  // Job's busy flag guards engines; samples may overlap
    auto to_js = [](Napi::Env env, const NvmlReport& r) -> Napi::Value {
        auto num_or_null = [&](double v) -> Napi::Value {
            return std::isnan(v) ? env.Null() : Napi::Number::New(env, v).As<Napi::Value>();
        };
        Napi::Object o = Napi::Object::New(env);
        o.Set("state", r.state);
        if (!r.reason.empty()) o.Set("reason", r.reason);
        Napi::Array devs = Napi::Array::New(env, r.devices.size());
        for (size_t i = 0; i < r.devices.size(); i++) {
            const NvmlDeviceSample& d = r.devices[i];
            Napi::Object x = Napi::Object::New(env);
            x.Set("index", d.index);
            x.Set("name", d.name);
            x.Set("pciBusId", d.pci_bus_id.empty() ? env.Null() : Napi::String::New(env, d.pci_bus_id).As<Napi::Value>());
            x.Set("utilization", num_or_null(d.utilization));
            x.Set("memoryUsedBytes", num_or_null(d.memory_used));
            x.Set("memoryTotalBytes", num_or_null(d.memory_total));
            x.Set("pcieRxBytesPerS", num_or_null(d.pcie_rx));
            x.Set("pcieTxBytesPerS", num_or_null(d.pcie_tx));
            x.Set("powerW", num_or_null(d.power_w));
            x.Set("temperatureC", num_or_null(d.temperature_c));
            devs.Set((uint32_t)i, x);
        }
        o.Set("devices", devs);
        return o;
    };
    return run_job<NvmlReport>(info.Env(), &unused, [] { return nvml_sample(); }, to_js);
}

// probe(spillDir): what this machine can do, for `spillway doctor`. Never throws.
Napi::Value Probe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto js = [&](const ProbeResult& r) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("ok", r.ok);
        o.Set("detail", r.detail);
        return o;
    };
    Napi::Object o = Napi::Object::New(env);
    o.Set("cublas", js(probe_library("libcublas.so.13")));
    o.Set("nvml", js(probe_library("libnvidia-ml.so.1")));
    o.Set("ioUring", js(probe_io_uring()));
    if (info.Length() > 0 && info[0].IsString()) o.Set("directIo", js(probe_direct_io(info[0].As<Napi::String>().Utf8Value())));
    o.Set("blas", blas_config());
    return o;
}

// calibrate({spillDir?, bytes?, device?, threads?, parts?, block?}): Promise<calibration> measured on a
// native thread with the engine's own paths (see tier/calibrate.h). parts: any of 'machine' (copies,
// GEMM, updates), 'ssd' and 'block' (default: 'machine' and 'ssd', plus 'block' when a block shape is
// given). Never rejects for a missing spill folder: the SSD tier is then {available: false, reason}.
Napi::Value Calibrate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    static std::atomic<bool> unused{false};
    CalibrateOptions o;
    if (info.Length() > 0 && info[0].IsObject()) {
        Napi::Object a = info[0].As<Napi::Object>();
        if (present(a, "spillDir")) o.spill_dir = str(a, "spillDir");
        if (present(a, "bytes")) o.bytes = u64(a.Get("bytes"), "bytes");
        o.threads = threads_field(a, "threads", o.threads);
        if (present(a, "device")) {
            std::string d = str(a, "device");
            o.cuda_device = parse_device_index(env, d);
#ifndef SPW_WITH_CUDA
            if (o.cuda_device >= 0)
                throw Napi::Error::New(env, "device '" + d + "' asked for, but this build of the engine has no CUDA backend");
#endif
        }
        if (present(a, "gemm")) o.gemm = gemm_field(a, "gemm");
        Napi::Value block = a.Get("block");
        if (block.IsObject()) {
            Napi::Object b = block.As<Napi::Object>();
            BlockShape& s = o.block;
            s.hidden = inum(b, "hidden");
            s.intermediate = inum(b, "intermediate");
            s.heads = inum(b, "heads");
            s.sequences = inum(b, "sequences");
            s.seq_len = inum(b, "seqLen");
            opt_int(b, "kvHeads", s.kv_heads);
            opt_int(b, "headDim", s.head_dim);
            opt_bool(b, "gated", s.gated);
            opt_bool(b, "rope", s.rope);
            opt_bool(b, "bias", s.bias);
            if (present(b, "norm")) {
                std::string n = str(b, "norm");
                if (n != "layernorm" && n != "rmsnorm") throw_type(env, "block.norm must be 'layernorm' or 'rmsnorm'");
                s.rmsnorm = n == "rmsnorm";
            }
            if (present(b, "activation")) s.activation = (int)named_field(b, "activation", kActivations);
            if (present(b, "noise")) s.noise = named_field(b, "noise", kNoise);
            if (s.hidden <= 0 || s.intermediate <= 0 || s.heads <= 0 || s.sequences <= 0 || s.seq_len <= 0)
                throw_type(env, "block: hidden, intermediate, heads, sequences and seqLen must be positive");
            o.has_block = true;
        }
        Napi::Value parts = a.Get("parts");
        if (parts.IsArray()) {
            Napi::Array p = parts.As<Napi::Array>();
            o.machine = o.ssd = false;
            bool want_block = false;
            for (uint32_t i = 0; i < p.Length(); i++) {
                Napi::Value v = p.Get(i);
                std::string n = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
                if (n == "machine") o.machine = true;
                else if (n == "ssd") o.ssd = true;
                else if (n == "block") want_block = true;
                else throw_type(env, "parts: each must be 'machine', 'ssd' or 'block'");
            }
            if (want_block && !o.has_block) throw_type(env, "parts 'block' needs a block shape");
            o.has_block = want_block;
        }
    }
    const bool machine = o.machine, ssd_part = o.ssd;
    auto to_js = [machine, ssd_part](Napi::Env env, const CalibrateResult& r) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        Napi::Array parts = Napi::Array::New(env);
        uint32_t np = 0;
        if (machine) parts.Set(np++, "machine");
        if (ssd_part) parts.Set(np++, "ssd");
        if (r.has_block) parts.Set(np++, "block");
        o.Set("parts", parts);
        o.Set("backend", r.backend);
        o.Set("pinned", r.pinned);
        o.Set("copyBytes", (double)r.copy_bytes);
        o.Set("h2dBytesPerS", r.h2d_bytes_per_s);
        o.Set("d2hBytesPerS", r.d2h_bytes_per_s);
        o.Set("gemmFlopsPerS", r.gemm_flops_per_s);
        o.Set("cpuUpdateElemsPerS", r.cpu_update_elems_per_s);
        o.Set("deviceUpdateElemsPerS", r.device_update_elems_per_s);
        o.Set("updateElems", (double)r.update_elems);
        o.Set("hostThreads", r.host_threads);
        Napi::Object ssd = Napi::Object::New(env);
        ssd.Set("available", r.ssd_available);
        if (r.ssd_available) {
            ssd.Set("direct", r.ssd_direct);
            ssd.Set("fileBytes", (double)r.ssd_file_bytes);
            ssd.Set("readBytesPerS", r.ssd_read_bytes_per_s);
            ssd.Set("writeBytesPerS", r.ssd_write_bytes_per_s);
            Napi::Array by = Napi::Array::New(env, r.ssd_by_request.size());
            for (size_t i = 0; i < r.ssd_by_request.size(); i++) {
                Napi::Object x = Napi::Object::New(env);
                x.Set("requestBytes", (double)r.ssd_by_request[i].request_bytes);
                x.Set("readBytesPerS", r.ssd_by_request[i].read_bytes_per_s);
                x.Set("writeBytesPerS", r.ssd_by_request[i].write_bytes_per_s);
                by.Set((uint32_t)i, x);
            }
            ssd.Set("byRequest", by);
        } else {
            ssd.Set("reason", ssd_part ? r.ssd_reason : std::string("not measured"));
        }
        o.Set("ssd", ssd);
        if (r.has_block) {
            const BlockTiming& b = r.block;
            auto shape = [&](const BlockShape& s) {
                Napi::Object x = Napi::Object::New(env);
                x.Set("hidden", s.hidden);
                x.Set("intermediate", s.intermediate);
                x.Set("heads", s.heads);
                x.Set("kvHeads", s.kv_heads > 0 ? s.kv_heads : s.heads);
                x.Set("headDim", s.head_dim > 0 ? s.head_dim : s.hidden / std::max(1, s.heads));
                x.Set("sequences", s.sequences);
                x.Set("seqLen", s.seq_len);
                return x;
            };
            Napi::Object x = Napi::Object::New(env);
            x.Set("source", b.source);
            x.Set("parameters", (double)b.parameters);
            x.Set("tokens", b.tokens);
            x.Set("forwardMs", b.forward_ms);
            x.Set("perturbMs", b.perturb_ms);
            x.Set("zoMs", b.zo_ms);
            x.Set("reps", b.reps);
            if (b.gemm_flops_per_s > 0) x.Set("gemmFlopsPerS", b.gemm_flops_per_s);
            if (b.source == "extrapolated") x.Set("proxy", shape(b.proxy));
            x.Set("detail", b.detail);
            o.Set("block", x);
        }
        o.Set("seconds", r.seconds);
        return o;
    };
    return run_job<CalibrateResult>(env, &unused, [o] { return calibrate(o); }, to_js);
}

// ropeTable(rope, maxPositions, seqLen): {invFreq: Float32Array, attentionScale} as a pass of
// seqLen tokens computes them (arch/rope.h); for checking every scaling against transformers.
Napi::Value RopeTableJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber())
        throw_type(env, "ropeTable(rope, maxPositions, seqLen) needs a rope object and two numbers");
    RopeConfig r = parse_rope(info[0], info[1].As<Napi::Number>().Int32Value());
    RopeTable t;
    try {
        rope_check(r, r.rotary_dim);
        t = rope_table(r, info[2].As<Napi::Number>().Int32Value());
    } catch (const std::runtime_error& e) {
        throw_type(env, e.what());
    }
    Napi::Object o = Napi::Object::New(env);
    Napi::Float32Array inv = Napi::Float32Array::New(env, t.inv_freq.size());
    if (!t.inv_freq.empty()) std::memcpy(inv.Data(), t.inv_freq.data(), t.inv_freq.size() * sizeof(float));
    o.Set("invFreq", inv);
    o.Set("attentionScale", t.attention_scale);
    return o;
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
    exports.Set("calibrate", Napi::Function::New(env, Calibrate));
    init_dist_binding(env, exports);
    exports.Set("probe", Napi::Function::New(env, Probe));
    exports.Set("cudaDevices", Napi::Function::New(env, CudaDevices));
    exports.Set("nvmlSample", Napi::Function::New(env, NvmlSample));
    exports.Set("Engine", EngineWrap::Init(env));
    exports.Set("noise", Napi::Function::New(env, Noise));
    exports.Set("noiseIsas", Napi::Function::New(env, NoiseIsas));
    exports.Set("fnv1a32", Napi::Function::New(env, Fnv));
    exports.Set("stepSeed", Napi::Function::New(env, StepSeed));
    exports.Set("philox", Napi::Function::New(env, Philox));
    exports.Set("ropeTable", Napi::Function::New(env, RopeTableJs));
    exports.Set("cudaCompiled", Napi::Boolean::New(env,
#ifdef SPW_WITH_CUDA
                                                   true
#else
                                                   false
#endif
                                                   ));
    return exports;
}

}  // namespace

NODE_API_MODULE(spillway, InitAll)
