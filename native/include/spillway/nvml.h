// NVML, loaded at run time with dlopen (no link-time dependency), once per process for both
// of its users: GPU telemetry (a machine without the NVIDIA driver reports state "absent",
// never an error) and the CUDA backend's free-memory figure.
#pragma once

#include <string>
#include <vector>

namespace spw {

// A value NVML cannot give for a device (not supported, no permission) is NaN.
struct NvmlDeviceSample {
    unsigned index = 0;
    std::string name;
    std::string pci_bus_id;
    double utilization = 0;      // 0..1, GPU busy over NVML's last sample period
    double memory_used = 0;      // bytes
    double memory_total = 0;     // bytes
    double pcie_rx = 0;          // bytes/s (NVML measures over ~20 ms)
    double pcie_tx = 0;          // bytes/s
    double power_w = 0;
    double temperature_c = 0;
};

struct NvmlReport {
    std::string state = "absent";  // "ok" | "absent" | "unavailable"
    std::string reason;
    std::vector<NvmlDeviceSample> devices;
};

// Thread-safe; loads and initialises NVML once per process. Blocks ~40 ms per device
// (the PCIe counters), so callers run it off the JavaScript thread.
NvmlReport nvml_sample();

// Free memory of the GPU at this PCI bus id ("0000:65:00.0"), bytes; -1 when NVML cannot say.
// What the CUDA backend reports beside an allocation that failed (cudaMemGetInfo needs a context).
long long nvml_free_bytes(const char* pci_bus_id);

}  // namespace spw
