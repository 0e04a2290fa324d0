// Node-API glue for the distributed layer (src/dist): the rank world of a process started
// by mpirun, its exchange (on a native thread: it waits for the other ranks) and abort.
#include "binding_dist.h"

#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "dist/comm.h"
#include "dist/mpi_api.h"
#include "dist/nccl_api.h"

namespace spw {
namespace {

// Runs fn on a libuv worker thread; resolves with to_js(result) or rejects with the message
// (code EDIST for a DistError, whose `ranks` names the ranks concerned).
template <typename R>
class DistJob : public Napi::AsyncWorker {
public:
    DistJob(Napi::Env env, std::function<R()> fn, std::function<Napi::Value(Napi::Env, const R&)> to_js)
        : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), fn_(std::move(fn)), to_js_(std::move(to_js)) {}
    Napi::Promise promise() { return deferred_.Promise(); }
    void Execute() override {
        try {
            result_ = fn_();
        } catch (const dist::DistError& e) {
            dist_error_ = true;
            ranks_ = e.ranks();
            SetError(e.what());
        } catch (const std::exception& e) {
            SetError(e.what());
        }
    }
    void OnOK() override { deferred_.Resolve(to_js_(Env(), result_)); }
    void OnError(const Napi::Error& e) override {
        Napi::Error err = Napi::Error::New(Env(), e.Message());
        err.Set("code", Napi::String::New(Env(), dist_error_ ? "EDIST" : "EENGINE"));
        Napi::Array ranks = Napi::Array::New(Env(), ranks_.size());
        for (size_t i = 0; i < ranks_.size(); i++) ranks.Set((uint32_t)i, ranks_[i]);
        err.Set("ranks", ranks);
        deferred_.Reject(err.Value());
    }

private:
    Napi::Promise::Deferred deferred_;
    std::function<R()> fn_;
    std::function<Napi::Value(Napi::Env, const R&)> to_js_;
    R result_{};
    bool dist_error_ = false;
    std::vector<int> ranks_;
};

double seconds_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
    if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string(what) + " needs a timeout in ms");
    double ms = info[i].As<Napi::Number>().DoubleValue();
    if (!(ms > 0)) throw Napi::TypeError::New(info.Env(), std::string(what) + ": the timeout must be positive");
    return ms / 1000.0;
}

dist::Comm& need_world(Napi::Env env) {
    dist::Comm* c = dist::Comm::current();
    if (!c) throw Napi::Error::New(env, "distInit() has not been called in this process");
    return *c;
}

// distLibraries(): whether Open MPI and NCCL can be loaded here, and whether this process is a rank.
Napi::Value Libraries(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    auto lib = [&](bool ok, const std::string& detail) {
        Napi::Object x = Napi::Object::New(env);
        x.Set("ok", ok);
        x.Set("detail", detail);
        return x;
    };
    std::string why;
    bool ok = mpi::available(&why);
    o.Set("mpi", lib(ok, why));
    ok = nccl::available(&why);
    o.Set("nccl", lib(ok, why));
    o.Set("launchedAsRank", dist::launched_as_rank());
    return o;
}

// distInit(timeoutMs): MPI_Init and the rendezvous; resolves with this rank and the world.
Napi::Value Init(const Napi::CallbackInfo& info) {
    double timeout = seconds_arg(info, 0, "distInit");
    auto* job = new DistJob<dist::Comm*>(
        info.Env(), [timeout] { return &dist::Comm::world(timeout); },
        [](Napi::Env env, dist::Comm* const& c) -> Napi::Value {
            Napi::Object o = Napi::Object::New(env);
            o.Set("rank", c->rank());
            o.Set("size", c->size());
            o.Set("localRank", c->self().local_rank);
            o.Set("localSize", c->self().local_size);
            o.Set("library", c->library());
            Napi::Array ranks = Napi::Array::New(env, (size_t)c->size());
            for (int r = 0; r < c->size(); r++) {
                Napi::Object x = Napi::Object::New(env);
                x.Set("rank", r);
                x.Set("pid", c->info(r).pid);
                x.Set("host", c->info(r).host);
                x.Set("localRank", c->info(r).local_rank);
                ranks.Set((uint32_t)r, x);
            }
            o.Set("ranks", ranks);
            return o;
        });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
}

// distExchange(values: Float64Array, timeoutMs, what): every rank's values (the same length on
// every rank), concatenated in rank order.
Napi::Value Exchange(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dist::Comm& c = need_world(env);
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        throw Napi::TypeError::New(env, "distExchange(values) needs a Float64Array");
    auto a = info[0].As<Napi::Float64Array>();
    auto mine = std::make_shared<std::vector<double>>(a.Data(), a.Data() + a.ElementLength());
    double timeout = seconds_arg(info, 1, "distExchange");
    std::string what = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "an exchange";
    auto* job = new DistJob<std::shared_ptr<std::vector<double>>>(
        env,
        [&c, mine, timeout, what] {
            auto all = std::make_shared<std::vector<double>>(mine->size() * (size_t)c.size());
            c.exchange(mine->data(), mine->size() * sizeof(double), all->data(), timeout, what);
            return all;
        },
        [](Napi::Env env, const std::shared_ptr<std::vector<double>>& all) -> Napi::Value {
            Napi::Float64Array out = Napi::Float64Array::New(env, all->size());
            if (!all->empty()) std::memcpy(out.Data(), all->data(), all->size() * sizeof(double));
            return out;
        });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
}

// distBroadcast(data: Uint8Array | null, timeoutMs, what): rank 0's bytes on every rank (the
// others pass null).
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dist::Comm& c = need_world(env);
    auto data = std::make_shared<std::vector<char>>();
    if (c.rank() == 0) {
        if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
            throw Napi::TypeError::New(env, "distBroadcast(data) on rank 0 needs a Uint8Array");
        auto a = info[0].As<Napi::Uint8Array>();
        data->assign(reinterpret_cast<const char*>(a.Data()), reinterpret_cast<const char*>(a.Data()) + a.ElementLength());
    }
    double timeout = seconds_arg(info, 1, "distBroadcast");
    std::string what = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "a broadcast";
    auto* job = new DistJob<std::shared_ptr<std::vector<char>>>(
        env,
        [&c, data, timeout, what] {
            c.broadcast(*data, timeout, what);
            return data;
        },
        [](Napi::Env env, const std::shared_ptr<std::vector<char>>& d) -> Napi::Value {
            Napi::Uint8Array out = Napi::Uint8Array::New(env, d->size());
            if (!d->empty()) std::memcpy(out.Data(), d->data(), d->size());
            return out;
        });
    Napi::Promise p = job->promise();
    job->Queue();
    return p;
}

// distAbort(code): ends every rank of the job; does not return.
Napi::Value Abort(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
    need_world(env).abort(code);
}

// distFinalize(): MPI_Finalize, once, at the end of a rank's work.
Napi::Value Finalize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    need_world(env).finalize();
    return env.Undefined();
}

}  // namespace

void init_dist_binding(Napi::Env env, Napi::Object exports) {
    exports.Set("distLibraries", Napi::Function::New(env, Libraries));
    exports.Set("distInit", Napi::Function::New(env, Init));
    exports.Set("distExchange", Napi::Function::New(env, Exchange));
    exports.Set("distBroadcast", Napi::Function::New(env, Broadcast));
    exports.Set("distAbort", Napi::Function::New(env, Abort));
    exports.Set("distFinalize", Napi::Function::New(env, Finalize));
}

bool dist_failed() {
    dist::Comm* c = dist::Comm::current();
    return c && c->failed();
}

}  // namespace spw
