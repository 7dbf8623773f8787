// CUDA_CHECK and CUBLAS_CHECK name the statement, file and line of a failed
// call, and the backends and devices a CUDA build reports. These run with
// or without a GPU: the failures below happen on every machine.
#include "devices/cuda/check.cuh"
#include "devices/backends.hpp"
#include "devices/cuda/cuda_device.hpp"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <string>

namespace dv = troupe::devices;

namespace {

std::string failure_of(void (*call)()) {
  try {
    call();
  } catch (const dv::device_error& e) {
    return e.what();
  }
  return "no failure";
}

} // namespace

BOOST_AUTO_TEST_SUITE(cuda_checks)

BOOST_AUTO_TEST_CASE(cuda_check_names_statement_file_and_line) {
  const auto what = failure_of([] { CUDA_CHECK(cudaSetDevice(-1)); });
  BOOST_TEST(what.find("cudaSetDevice(-1) failed at ") != std::string::npos,
             what);
  BOOST_TEST(what.find("check.test.cpp:") != std::string::npos, what);
  BOOST_TEST(what.find("cudaError") != std::string::npos, what);
}

// cuBLAS is loaded only with a GPU; a status stands in for a failed call.
cublasStatus_t uninitialized() {
  return CUBLAS_STATUS_NOT_INITIALIZED;
}

BOOST_AUTO_TEST_CASE(cublas_check_names_statement_and_status) {
  const auto what = failure_of([] { CUBLAS_CHECK(uninitialized()); });
  BOOST_TEST(what.find("uninitialized() failed at ") != std::string::npos,
             what);
  BOOST_TEST(what.find("check.test.cpp:") != std::string::npos, what);
  BOOST_TEST(what.find("CUBLAS_STATUS_NOT_INITIALIZED") != std::string::npos,
             what);
}

BOOST_AUTO_TEST_CASE(cublas_is_loaded_at_run_time) {
  // Not linked: found with dlopen, or an error saying what was tried.
  const auto error = dv::cuda_backend::cublas_error();
  if (std::filesystem::exists("/usr/local/cuda/lib64/libcublas.so." +
                              std::to_string(CUBLAS_VER_MAJOR)))
    BOOST_TEST(error.empty(), error);
  else
    BOOST_TEST(error.rfind("cannot load cuBLAS (", 0) == 0u, error);
}

BOOST_AUTO_TEST_CASE(backends_and_devices_of_a_cuda_build) {
  const auto backends = dv::compiled_backends();
  BOOST_TEST((backends == std::vector<std::string>{"cpu", "cuda"}));
  std::string why;
  const auto gpus = dv::cuda_devices(&why);
  const auto all = dv::detect_devices();
  BOOST_TEST(all.size() == gpus.size() + 1);
  BOOST_TEST(all.front().id == "cpu");
  if (gpus.empty()) {
    // A CUDA build on a machine without a GPU: asking for one says why.
    BOOST_TEST(!why.empty());
    try {
      dv::make_cuda_device(0);
      BOOST_FAIL("a CUDA device without a GPU");
    } catch (const dv::device_error& e) {
      BOOST_TEST(std::string(e.what()).rfind("cuda:0: ", 0) == 0, e.what());
    }
  } else {
    BOOST_TEST(gpus.front().id == "cuda:0");
    BOOST_TEST(gpus.front().memory_bytes > 0);
  }
}

BOOST_AUTO_TEST_SUITE_END()
