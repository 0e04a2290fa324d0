// Node-API glue for the distributed layer: distLibraries, distInit, distExchange, distAbort, distFinalize.
#pragma once

#include <napi.h>

namespace spw {

void init_dist_binding(Napi::Env env, Napi::Object exports);
// Whether this rank's world has had an exchange fail: memory an exchange was receiving into
// must then stay allocated until the process is aborted.
bool dist_failed();

}  // namespace spw
