#include "modelio/onnx_model.hpp"

#include "devices/device.hpp"
#include "devices/nn/model.hpp"

#include <onnx/onnx_pb.h>

#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

using namespace troupe;
using devices::nn::layer_kind;
using devices::nn::layer_spec;

namespace {

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/troupe-modelio-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return path / name; }
};

layer_spec make(layer_kind k, std::int64_t units = 0, std::int64_t kernel = 0,
                std::int64_t stride = 1, std::int64_t padding = 0) {
  layer_spec l;
  l.kind = k;
  l.units = units;
  l.kernel = kernel;
  l.stride = stride;
  l.padding = padding;
  return l;
}

// Every layer kind troupe has, on a [2, 6, 6] input.
modelio::trained_model every_layer() {
  modelio::trained_model m;
  m.input = {2, 6, 6};
  auto bn = make(layer_kind::batch_norm);
  bn.momentum = 0.25f;
  bn.eps = 1e-3f;
  auto ln = make(layer_kind::layer_norm);
  ln.eps = 1e-4f;
  auto drop = make(layer_kind::dropout);
  drop.rate = 0.3f;
  m.layers = {make(layer_kind::conv2d, 3, 3, 1, 1),
              bn,
              make(layer_kind::relu),
              make(layer_kind::max_pool2d, 0, 2, 2),
              make(layer_kind::conv2d, 4, 2, 1, 0),
              make(layer_kind::avg_pool2d, 0, 2, 1, 1),
              ln,
              make(layer_kind::tanh),
              drop,
              make(layer_kind::dense, 5),
              make(layer_kind::sigmoid),
              make(layer_kind::batch_norm),
              make(layer_kind::flatten),
              make(layer_kind::dense, 3),
              make(layer_kind::softmax)};
  m.loss.kind = devices::loss_kind::cross_entropy;
  m.classes = 3;
  m.job = "every_layer";
  m.epoch = 7;
  m.params_digest = "abc123";
  const auto layout = devices::nn::param_layout(m.input, m.layers);
  m.params.resize(static_cast<std::size_t>(devices::nn::param_count(layout)));
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : m.params)
    v = u(rng);
  // Running variances must be positive.
  for (const auto& b : layout)
    if (b.role == devices::nn::param_role::running)
      for (std::int64_t c = 0; c < b.cols; ++c)
        m.params[static_cast<std::size_t>(b.offset + b.cols + c)] =
            0.5f + std::abs(m.params[static_cast<std::size_t>(b.offset + c)]);
  return m;
}

std::vector<float> run(const modelio::trained_model& m,
                       const std::vector<float>& x, std::int64_t batch) {
  devices::nn::model net(devices::cpu(), m.input, m.layers, m.loss);
  auto params = devices::tensor::empty({net.param_count()});
  std::copy(m.params.begin(), m.params.end(), params.data());
  auto in = devices::tensor::empty({batch, net.inputs()});
  std::copy(x.begin(), x.end(), in.data());
  const auto& out = net.forward(params, in);
  return {out.data(), out.data() + out.numel()};
}

void expect_refused(const std::string& path, const std::string& what) {
  try {
    modelio::load_onnx(path);
    BOOST_ERROR("loaded " << path << ", expected: " << what);
  } catch (const modelio::model_error& e) {
    const std::string msg = e.what();
    BOOST_TEST_INFO("message: " << msg);
    BOOST_TEST(msg.find(what) != std::string::npos);
    BOOST_TEST(msg.find(path) != std::string::npos);
  }
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

onnx::ModelProto proto_of(const std::string& path) {
  onnx::ModelProto mp;
  BOOST_REQUIRE(mp.ParseFromString(read_bytes(path)));
  return mp;
}

void write_proto(const onnx::ModelProto& mp, const std::string& path) {
  std::string bytes;
  BOOST_REQUIRE(mp.SerializeToString(&bytes));
  write_bytes(path, bytes);
}

} // namespace

BOOST_AUTO_TEST_CASE(every_layer_round_trips_with_the_same_outputs) {
  temp_dir d;
  const auto m = every_layer();
  const auto path = d.file("m.onnx");
  modelio::save_onnx(m, path);

  const auto back = modelio::load_onnx(path);
  BOOST_TEST(back.input == m.input);
  BOOST_TEST(back.params == m.params); // bit for bit, in troupe's layout
  BOOST_TEST(back.classes == 3);
  BOOST_TEST((back.loss.kind == devices::loss_kind::cross_entropy));
  BOOST_TEST(back.job == "every_layer");
  BOOST_TEST(back.epoch == 7);
  BOOST_TEST(back.params_digest == "abc123");
  // Dropout is left out; the dense after an image gets a Flatten.
  std::vector<std::string> kinds;
  for (const auto& l : back.layers)
    kinds.emplace_back(devices::nn::to_string(l.kind));
  const std::vector<std::string> expected{
      "conv2d",     "batch_norm", "relu",    "max_pool2d", "conv2d",
      "avg_pool2d", "layer_norm", "tanh",    "flatten",    "dense",
      "sigmoid",    "batch_norm", "flatten", "dense",      "softmax"};
  BOOST_TEST(kinds == expected, boost::test_tools::per_element());
  BOOST_TEST(back.layers[1].momentum == 0.25f);
  BOOST_TEST(back.layers[1].eps == 1e-3f);
  BOOST_TEST(back.layers[5].padding == 1);
  BOOST_TEST(back.layers[6].eps == 1e-4f);

  const std::int64_t batch = 4;
  std::vector<float> x(static_cast<std::size_t>(batch * 72));
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (auto& v : x)
    v = u(rng);
  const auto a = run(m, x, batch);
  const auto b = run(back, x, batch);
  BOOST_TEST(a == b, boost::test_tools::per_element());

  // The graph is what the docs say: standard ops, opset 17.
  const auto s = modelio::summarize_onnx(path);
  BOOST_TEST(s.opset == 17);
  BOOST_TEST(s.ir_version == 8);
  BOOST_TEST(s.producer.rfind("troupe", 0) == 0);
  const std::vector<std::string> ops{
      "Conv",        "BatchNormalization", "Relu",    "MaxPool", "Conv",
      "AveragePool", "LayerNormalization", "Tanh",    "Flatten", "Gemm",
      "Sigmoid",     "BatchNormalization", "Flatten", "Gemm",    "Softmax"};
  BOOST_TEST(s.ops == ops, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(gemm_with_transposed_weights_reads_as_the_same_layer) {
  // PyTorch writes Linear as Gemm(transB = 1) with weights [out, in].
  temp_dir d;
  modelio::trained_model m;
  m.input = {3};
  m.layers = {make(layer_kind::dense, 2)};
  m.params = {1, 2, 3, 4, 5, 6, 0.5f, -0.5f}; // W [3, 2], b [2]
  modelio::save_onnx(m, d.file("a.onnx"));
  auto mp = proto_of(d.file("a.onnx"));
  auto* g = mp.mutable_graph();
  auto* w = g->mutable_initializer(0);
  BOOST_REQUIRE(w->name() == "dense0.weight");
  const float t[6] = {1, 3, 5, 2, 4, 6}; // [2, 3]
  w->clear_dims();
  w->add_dims(2);
  w->add_dims(3);
  w->set_raw_data(t, sizeof t);
  auto* attr = g->mutable_node(0)->add_attribute();
  attr->set_name("transB");
  attr->set_type(onnx::AttributeProto::INT);
  attr->set_i(1);
  write_proto(mp, d.file("b.onnx"));
  const auto back = modelio::load_onnx(d.file("b.onnx"));
  BOOST_TEST(back.params == m.params, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bad_files_are_refused_naming_the_file_and_cause) {
  temp_dir d;
  expect_refused(d.file("missing.onnx"), "cannot read");
  write_bytes(d.file("empty.onnx"), "");
  expect_refused(d.file("empty.onnx"), "not an ONNX model");
  write_bytes(d.file("text.onnx"), "[job]\nname = \"not a model\"\n");
  expect_refused(d.file("text.onnx"), "not an ONNX model");

  const auto m = every_layer();
  modelio::save_onnx(m, d.file("m.onnx"));
  const auto bytes = read_bytes(d.file("m.onnx"));
  for (double f : {0.1, 0.5, 0.97}) {
    const auto cut = d.file("cut.onnx");
    write_bytes(cut,
                bytes.substr(0, static_cast<std::size_t>(
                                    f * static_cast<double>(bytes.size()))));
    BOOST_CHECK_THROW(modelio::load_onnx(cut), modelio::model_error);
  }
  // A flipped byte in the weights' header: refused or read as some other
  // model, never a crash.
  for (std::size_t at : {std::size_t{3}, bytes.size() / 2}) {
    auto bad = bytes;
    bad[at] = static_cast<char>(bad[at] ^ 0x5a);
    write_bytes(d.file("flip.onnx"), bad);
    try {
      modelio::load_onnx(d.file("flip.onnx"));
    } catch (const modelio::model_error&) {
    }
  }
}

BOOST_AUTO_TEST_CASE(an_op_troupe_cannot_run_is_refused_by_name) {
  temp_dir d;
  modelio::trained_model m;
  m.input = {4};
  m.layers = {make(layer_kind::dense, 2), make(layer_kind::relu)};
  m.params.assign(10, 0.25f);
  modelio::save_onnx(m, d.file("a.onnx"));
  auto mp = proto_of(d.file("a.onnx"));
  mp.mutable_graph()->mutable_node(1)->set_op_type("Elu");
  write_proto(mp, d.file("elu.onnx"));
  expect_refused(d.file("elu.onnx"), "op Elu is not one troupe can run");

  // Gemm with alpha != 1.
  mp = proto_of(d.file("a.onnx"));
  auto* a = mp.mutable_graph()->mutable_node(0)->add_attribute();
  a->set_name("alpha");
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(2.0f);
  write_proto(mp, d.file("alpha.onnx"));
  expect_refused(d.file("alpha.onnx"), "alpha = beta = 1");

  // Weights that do not take the input.
  mp = proto_of(d.file("a.onnx"));
  mp.mutable_graph()
      ->mutable_input(0)
      ->mutable_type()
      ->mutable_tensor_type()
      ->mutable_shape()
      ->mutable_dim(1)
      ->set_dim_value(5);
  write_proto(mp, d.file("shape.onnx"));
  expect_refused(d.file("shape.onnx"), "do not take its input [5]");

  // An old opset.
  mp = proto_of(d.file("a.onnx"));
  mp.mutable_opset_import(0)->set_version(9);
  write_proto(mp, d.file("old.onnx"));
  expect_refused(d.file("old.onnx"), "opset 9; troupe reads opset 13");
}

BOOST_AUTO_TEST_CASE(a_failed_save_leaves_the_file_there) {
  temp_dir d;
  const auto path = d.file("keep.onnx");
  write_bytes(path, "precious");
  modelio::trained_model m;
  m.input = {4};
  m.layers = {make(layer_kind::dense, 2)};
  m.params.assign(3, 0.0f); // 10 needed
  BOOST_CHECK_THROW(modelio::save_onnx(m, path), modelio::model_error);
  BOOST_TEST(read_bytes(path) == "precious");
  BOOST_CHECK_THROW(
      modelio::save_onnx(every_layer(), d.file("no/such/dir.onnx")),
      modelio::model_error);
}
