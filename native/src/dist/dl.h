// A library reached through dlopen (Open MPI, NCCL): open it by the name an environment
// variable gives, else the default soname; take its entry points, remembering the first missing.
#pragma once

#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <type_traits>

namespace spw::dist {

struct Library {
    void* handle = nullptr;
    std::string file;        // what was opened
    std::string error;       // dlerror() when it could not be
    const char* missing = nullptr;  // the first entry point not found

    Library(const char* env, const char* soname, int mode) {
        const char* e = std::getenv(env);
        file = e && *e ? e : soname;
        handle = dlopen(file.c_str(), mode);
        if (!handle) {
            const char* why = dlerror();
            error = why ? why : "dlopen failed";
        }
    }
    template <typename F>
    void need(const char* name, F& out) {
        out = reinterpret_cast<std::remove_reference_t<F>>(dlsym(handle, name));
        if (!out && !missing) missing = name;
    }
    // A data symbol (Open MPI's predefined handles are the addresses of its objects).
    void* object(const char* name) {
        void* p = dlsym(handle, name);
        if (!p && !missing) missing = name;
        return p;
    }
};

}  // namespace spw::dist
