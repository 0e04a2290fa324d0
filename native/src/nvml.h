// GPU telemetry through NVML, loaded at run time with dlopen (no link-time dependency):
// a machine without the NVIDIA driver reports state "absent", never an error.
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

}  // namespace spw
