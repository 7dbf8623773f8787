#pragma once
/// \file The CUDA backend's entry points, behind devices/backends.hpp.
/// CUDA-free, like every header outside devices/cuda/*.cuh.
#include "devices/backends.hpp"

#include <memory>
#include <string>
#include <vector>

namespace troupe::devices::cuda_backend {

/// The GPUs the CUDA runtime sees; when none, why_not says why.
std::vector<device_info> list_devices(std::string* why_not);

/// A device with its own cuBLAS handle and stream on GPU `ordinal`.
std::unique_ptr<device> make_device(int ordinal);

/// Loads cuBLAS (once; libcublas.so.N of the headers' version N) and says
/// why it could not be loaded: empty when it was.
std::string cublas_error();

} // namespace troupe::devices::cuda_backend
