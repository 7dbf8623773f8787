// ONNX model files (modelio/): `troupe eval`, `predict` and `inspect` read
// files from anywhere.
#include "modelio/onnx_model.hpp"
#include "tools/fuzz/seeds_init.hpp"

#include <fstream>
#include <iterator>

namespace tf = troupe::fuzz;
namespace mio = troupe::modelio;
namespace nn = troupe::devices::nn;

std::vector<tf::bytes> tf::fuzz_seeds() {
  mio::trained_model m;
  m.input = {4};
  m.layers = {{nn::layer_kind::dense, 3},
              {nn::layer_kind::relu, 0},
              {nn::layer_kind::dense, 2}};
  m.params.assign(4 * 3 + 3 + 3 * 2 + 2, 0.25f);
  m.classes = 2;
  m.input_format = "csv";
  const std::string path = as_file(nullptr, 0, 7) + ".onnx";
  mio::save_onnx(m, path);
  std::ifstream in(path, std::ios::binary);
  bytes seed(std::istreambuf_iterator<char>(in), {});
  std::remove(path.c_str());
  return {seed};
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t n) {
  const auto path = tf::as_file(data, n);
  try {
    mio::load_onnx(path);
  } catch (const mio::model_error&) {
  }
  try {
    mio::summarize_onnx(path);
  } catch (const mio::model_error&) {
  }
  return 0;
}
