// CUDA_CHECK and CUBLAS_CHECK name the statement, file and line of a failed
// call, and the backends and devices a CUDA build reports. These run with
// or without a GPU: the calls below fail on every machine.
#include "devices/cuda/check.cuh"
#include "devices/backends.hpp"

#include <boost/test/unit_test.hpp>

#include <algorithm>
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

BOOST_AUTO_TEST_CASE(cublas_check_names_statement_and_status) {
  const auto what = failure_of([] {
    const float one = 1;
    CUBLAS_CHECK(cublasSgemm(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one,
                             nullptr, 1, nullptr, 1, &one, nullptr, 1));
  });
  BOOST_TEST(what.find("cublasSgemm(nullptr") != std::string::npos, what);
  BOOST_TEST(what.find("CUBLAS_STATUS_NOT_INITIALIZED") != std::string::npos,
             what);
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
