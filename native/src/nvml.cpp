// NVML by dlopen: our own prototypes of the few entry points we call (nvml.h from the
// CUDA toolkit is not needed to build, and the addon loads where no driver is installed).
#include "spillway/nvml.h"

#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <mutex>

namespace spw {
namespace {

using nvml_device = void*;
struct NvmlUtilization { unsigned gpu, memory; };
struct NvmlMemory { unsigned long long total, free, used; };

constexpr int kSuccess = 0;
constexpr int kErrorDriverNotLoaded = 9;
constexpr int kErrorLibraryNotFound = 12;
constexpr unsigned kPcieTxBytes = 0;  // nvmlPcieUtilCounter_t
constexpr unsigned kPcieRxBytes = 1;
constexpr unsigned kTemperatureGpu = 0;  // nvmlTemperatureSensors_t
constexpr unsigned kNameSize = 96;       // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr unsigned kBusIdSize = 32;      // NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE

struct NvmlPci {  // nvmlPciInfo_t (the v3 layout read by nvmlDeviceGetPciInfo_v3)
    char bus_id_legacy[16];
    unsigned domain, bus, device, pci_device_id, pci_sub_system_id;
    char bus_id[kBusIdSize];
};

struct Api {
    int (*init)() = nullptr;
    const char* (*error_string)(int) = nullptr;
    int (*count)(unsigned*) = nullptr;
    int (*by_index)(unsigned, nvml_device*) = nullptr;
    int (*name)(nvml_device, char*, unsigned) = nullptr;
    int (*pci)(nvml_device, NvmlPci*) = nullptr;
    int (*utilization)(nvml_device, NvmlUtilization*) = nullptr;
    int (*memory)(nvml_device, NvmlMemory*) = nullptr;
    int (*pcie)(nvml_device, unsigned, unsigned*) = nullptr;
    int (*power)(nvml_device, unsigned*) = nullptr;
    int (*temperature)(nvml_device, unsigned, unsigned*) = nullptr;
    int (*by_bus)(const char*, nvml_device*) = nullptr;
    std::string state = "absent";
    std::string reason;

    std::string err(int code) const {
        const char* s = error_string ? error_string(code) : nullptr;
        return s ? std::string(s) : "NVML error " + std::to_string(code);
    }
};

template <typename F>
bool sym(void* lib, const char* name, F& out) {
    out = reinterpret_cast<F>(dlsym(lib, name));
    return out != nullptr;
}

// Loaded and initialised once; NVML stays initialised for the life of the process.
const Api& api() {
    static Api a;
    static std::once_flag once;
    std::call_once(once, [] {
        void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            const char* e = dlerror();
            a.reason = std::string("NVML not found (libnvidia-ml.so.1): ") + (e ? e : "dlopen failed");
            return;
        }
        sym(lib, "nvmlErrorString", a.error_string);
        bool ok = sym(lib, "nvmlInit_v2", a.init) && sym(lib, "nvmlDeviceGetCount_v2", a.count) &&
                  sym(lib, "nvmlDeviceGetHandleByIndex_v2", a.by_index) && sym(lib, "nvmlDeviceGetName", a.name) &&
                  sym(lib, "nvmlDeviceGetUtilizationRates", a.utilization) &&
                  sym(lib, "nvmlDeviceGetMemoryInfo", a.memory) && sym(lib, "nvmlDeviceGetPcieThroughput", a.pcie) &&
                  sym(lib, "nvmlDeviceGetPowerUsage", a.power) && sym(lib, "nvmlDeviceGetTemperature", a.temperature);
        sym(lib, "nvmlDeviceGetPciInfo_v3", a.pci);  // optional: the bus id maps NVML to CUDA indices
        sym(lib, "nvmlDeviceGetHandleByPciBusId_v2", a.by_bus);  // optional: free memory by a CUDA device's bus id
        if (!ok) {
            a.state = "unavailable";
            a.reason = "libnvidia-ml.so.1 lacks an entry point Spillway needs (driver too old?)";
            return;
        }
        int rc = a.init();
        if (rc == kErrorDriverNotLoaded || rc == kErrorLibraryNotFound) {
            a.reason = "NVIDIA driver not loaded: " + a.err(rc);
            return;
        }
        if (rc != kSuccess) {
            a.state = "unavailable";
            a.reason = "nvmlInit failed: " + a.err(rc);
            return;
        }
        a.state = "ok";
    });
    return a;
}

double or_nan(int rc, double v) { return rc == kSuccess ? v : std::nan(""); }

}  // namespace

long long nvml_free_bytes(const char* pci_bus_id) {
    const Api& a = api();
    nvml_device d = nullptr;
    NvmlMemory m{};
    if (a.state != "ok" || !a.by_bus || a.by_bus(pci_bus_id, &d) != kSuccess || a.memory(d, &m) != kSuccess) return -1;
    return (long long)m.free;
}

NvmlReport nvml_sample() {
    const Api& a = api();
    NvmlReport r;
    if (a.state != "ok") {
        r.state = a.state;
        r.reason = a.reason;
        return r;
    }
    unsigned n = 0;
    int rc = a.count(&n);
    if (rc != kSuccess) {
        r.state = "unavailable";
        r.reason = "nvmlDeviceGetCount failed: " + a.err(rc);
        return r;
    }
    if (n == 0) {
        r.state = "absent";
        r.reason = "NVML found no NVIDIA GPU";
        return r;
    }
    r.state = "ok";
    for (unsigned i = 0; i < n; i++) {
        nvml_device d = nullptr;
        if (a.by_index(i, &d) != kSuccess) continue;  // lost or inaccessible: left out
        NvmlDeviceSample s;
        s.index = i;
        char name[kNameSize] = {0};
        s.name = a.name(d, name, kNameSize) == kSuccess ? std::string(name) : "GPU " + std::to_string(i);
        NvmlPci pci{};
        if (a.pci && a.pci(d, &pci) == kSuccess) s.pci_bus_id = std::string(pci.bus_id, strnlen(pci.bus_id, kBusIdSize));
        NvmlUtilization u{};
        rc = a.utilization(d, &u);
        s.utilization = or_nan(rc, u.gpu / 100.0);
        NvmlMemory m{};
        rc = a.memory(d, &m);
        s.memory_used = or_nan(rc, (double)m.used);
        s.memory_total = or_nan(rc, (double)m.total);
        unsigned kb = 0;
        rc = a.pcie(d, kPcieRxBytes, &kb);
        s.pcie_rx = or_nan(rc, kb * 1024.0);  // NVML reports KB/s
        kb = 0;
        rc = a.pcie(d, kPcieTxBytes, &kb);
        s.pcie_tx = or_nan(rc, kb * 1024.0);
        unsigned mw = 0;
        rc = a.power(d, &mw);
        s.power_w = or_nan(rc, mw / 1000.0);
        unsigned c = 0;
        rc = a.temperature(d, kTemperatureGpu, &c);
        s.temperature_c = or_nan(rc, (double)c);
        r.devices.push_back(std::move(s));
    }
    return r;
}

}  // namespace spw
