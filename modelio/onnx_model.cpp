#include "modelio/onnx_model.hpp"

#include "devices/nn/custom.hpp"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace troupe::modelio {

namespace {

using devices::shape_t;
using devices::nn::layer_kind;
using devices::nn::layer_spec;

constexpr std::int64_t ir_version = 8; // ONNX 1.12's IR
constexpr std::int64_t opset_written = 17;
constexpr std::int64_t opset_oldest = 13;
// No troupe model comes near this; protobuf itself stops at 2 GiB.
constexpr std::uintmax_t max_file_bytes = std::uintmax_t{2} << 30;

const char* runnable_ops =
    "Gemm, Conv, MaxPool, AveragePool, Flatten, Relu, Sigmoid, Tanh, "
    "Softmax, BatchNormalization, LayerNormalization, Dropout, Identity";

// ---------------------------------------------------------------- writing

struct graph_writer {
  onnx::GraphProto* g;
  std::string current = "input";
  int count = 0;

  onnx::NodeProto* node(const std::string& op,
                        std::vector<std::string> extra_inputs = {}) {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(fmt::format("{}_{}", op, count));
    n->add_input(current);
    for (auto& i : extra_inputs)
      n->add_input(i);
    current = fmt::format("t{}", count++);
    n->add_output(current);
    return n;
  }

  void init(const std::string& name, const shape_t& dims, const float* data) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (auto d : dims)
      t->add_dims(d);
    t->set_raw_data(data, static_cast<std::size_t>(devices::numel_of(dims)) *
                              sizeof(float));
  }
};

void set_ints(onnx::NodeProto* n, const char* name,
              std::vector<std::int64_t> values) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (auto v : values)
    a->add_ints(v);
}
void set_int(onnx::NodeProto* n, const char* name, std::int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}
void set_float(onnx::NodeProto* n, const char* name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

void set_value_info(onnx::ValueInfoProto* v, const std::string& name,
                    const shape_t& per_sample, const std::string& doc) {
  v->set_name(name);
  v->set_doc_string(doc);
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  auto* s = t->mutable_shape();
  s->add_dim()->set_dim_param("N");
  for (auto d : per_sample)
    s->add_dim()->set_dim_value(d);
}

void add_meta(onnx::ModelProto& mp, const std::string& key,
              const std::string& value) {
  auto* p = mp.add_metadata_props();
  p->set_key("troupe." + key);
  p->set_value(value);
}

std::string layer_name(std::size_t i, const layer_spec& l) {
  return fmt::format("layers[{}] ({})", i,
                     l.kind == layer_kind::custom
                         ? l.custom.c_str()
                         : devices::nn::to_string(l.kind));
}

// A custom layer's ONNX node and how many parameter blocks it has; throws
// model_error naming the layer when it has no mapping, or one that does not
// fit its parameters.
struct custom_export {
  devices::nn::custom_onnx node;
  std::size_t params = 0;
};

custom_export custom_node(std::size_t i, const layer_spec& l,
                          const shape_t& in) {
  const auto layer = devices::nn::make_layer(l, fmt::format("layers[{}]", i));
  auto node = layer->onnx(in);
  if (!node || node->op_type.empty())
    throw model_error(fmt::format(
        "model.{}: this custom layer has no ONNX mapping (its onnx() "
        "returns none), so the model cannot be saved as ONNX",
        layer_name(i, l)));
  const auto params = layer->params(in);
  if (!node->param_shapes.empty() && node->param_shapes.size() != params.size())
    throw model_error(fmt::format(
        "model.{}: its ONNX mapping shapes {} parameter(s) but it has {}",
        layer_name(i, l), node->param_shapes.size(), params.size()));
  for (std::size_t k = 0; k < node->param_shapes.size(); ++k)
    if (devices::numel_of(node->param_shapes[k]) !=
        params[k].rows * params[k].cols)
      throw model_error(fmt::format(
          "model.{}: its ONNX mapping shapes parameter {} as {}, which does "
          "not hold its {} values",
          layer_name(i, l), params[k].name,
          devices::to_string(node->param_shapes[k]),
          params[k].rows * params[k].cols));
  return {*node, params.size()};
}

onnx::ModelProto to_proto(const trained_model& m) {
  const auto shapes = devices::nn::infer_shapes(m.input, m.layers);
  const auto layout = devices::nn::param_layout(m.input, m.layers);
  if (static_cast<std::int64_t>(m.params.size()) !=
      devices::nn::param_count(layout))
    throw model_error(
        fmt::format("the model has {} parameters but its layers take {}",
                    m.params.size(), devices::nn::param_count(layout)));
  onnx::ModelProto mp;
  mp.set_ir_version(ir_version);
  auto* opset = mp.add_opset_import();
  opset->set_domain("");
  opset->set_version(opset_written);
  mp.set_producer_name("troupe");
  mp.set_producer_version(TROUPE_VERSION);
  mp.set_doc_string(
      "A model trained by troupe. Input: samples after troupe's input "
      "scaling (IDX bytes / 255; CSV values as they are). Output: logits "
      "for classification, values for regression.");
  auto* g = mp.mutable_graph();
  g->set_name(m.job.empty() ? "troupe" : m.job);
  set_value_info(g->add_input(), "input", m.input,
                 m.input_format == "idx"
                     ? "IDX image bytes / 255, as troupe trains on them"
                     : "CSV feature columns, as troupe reads them");
  graph_writer w{g};
  std::size_t block = 0;
  auto params_of = [&](std::size_t b) {
    return m.params.data() + layout[b].offset;
  };
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    const auto& l = m.layers[i];
    const auto& in = i == 0 ? m.input : shapes[i - 1];
    switch (l.kind) {
      case layer_kind::dense: {
        if (in.size() != 1)
          set_int(w.node("Flatten"), "axis", 1);
        const auto& wb = layout[block];
        const auto& bb = layout[block + 1];
        w.init(wb.name, {wb.rows, wb.cols}, params_of(block));
        w.init(bb.name, {bb.cols}, params_of(block + 1));
        w.node("Gemm", {wb.name, bb.name});
        block += 2;
        break;
      }
      case layer_kind::conv2d: {
        const auto& wb = layout[block];
        const auto& bb = layout[block + 1];
        w.init(wb.name, {l.units, in[0], l.kernel, l.kernel}, params_of(block));
        w.init(bb.name, {bb.cols}, params_of(block + 1));
        auto* n = w.node("Conv", {wb.name, bb.name});
        set_ints(n, "kernel_shape", {l.kernel, l.kernel});
        set_ints(n, "strides", {l.stride, l.stride});
        set_ints(n, "pads", {l.padding, l.padding, l.padding, l.padding});
        set_ints(n, "dilations", {1, 1});
        set_int(n, "group", 1);
        block += 2;
        break;
      }
      case layer_kind::max_pool2d:
      case layer_kind::avg_pool2d: {
        const bool max = l.kind == layer_kind::max_pool2d;
        auto* n = w.node(max ? "MaxPool" : "AveragePool");
        set_ints(n, "kernel_shape", {l.kernel, l.kernel});
        set_ints(n, "strides", {l.stride, l.stride});
        set_ints(n, "pads", {l.padding, l.padding, l.padding, l.padding});
        if (!max)
          set_int(n, "count_include_pad", 1);
        break;
      }
      case layer_kind::flatten:
        set_int(w.node("Flatten"), "axis", 1);
        break;
      case layer_kind::relu:
        w.node("Relu");
        break;
      case layer_kind::sigmoid:
        w.node("Sigmoid");
        break;
      case layer_kind::tanh:
        w.node("Tanh");
        break;
      case layer_kind::softmax:
        set_int(w.node("Softmax"), "axis", 1);
        break;
      case layer_kind::dropout:
        break; // inference: the identity
      case layer_kind::batch_norm: {
        const auto c = in[0];
        const auto& sb = layout[block];
        const auto& hb = layout[block + 1];
        const auto& rb = layout[block + 2];
        const auto base = rb.name.substr(0, rb.name.rfind('.'));
        w.init(sb.name, {c}, params_of(block));
        w.init(hb.name, {c}, params_of(block + 1));
        w.init(base + ".running_mean", {c}, params_of(block + 2));
        w.init(base + ".running_var", {c}, params_of(block + 2) + c);
        auto* n = w.node(
            "BatchNormalization",
            {sb.name, hb.name, base + ".running_mean", base + ".running_var"});
        set_float(n, "epsilon", l.eps);
        // ONNX weighs the running value by momentum, PyTorch (and troupe)
        // the batch.
        set_float(n, "momentum", 1.0f - l.momentum);
        block += 3;
        break;
      }
      case layer_kind::layer_norm: {
        const auto& sb = layout[block];
        const auto& hb = layout[block + 1];
        w.init(sb.name, in, params_of(block));
        w.init(hb.name, in, params_of(block + 1));
        auto* n = w.node("LayerNormalization", {sb.name, hb.name});
        set_int(n, "axis", 1);
        set_float(n, "epsilon", l.eps);
        block += 2;
        break;
      }
      case layer_kind::custom: {
        const auto [node, count] = custom_node(i, l, in);
        std::vector<std::string> names;
        for (std::size_t k = 0; k < count; ++k) {
          const auto& b = layout[block + k];
          w.init(b.name,
                 node.param_shapes.empty() ? shape_t{b.rows, b.cols}
                                           : shape_t(node.param_shapes[k]),
                 params_of(block + k));
          names.push_back(b.name);
        }
        auto* n = w.node(node.op_type, names);
        if (!node.domain.empty()) {
          n->set_domain(node.domain);
          bool known = false;
          for (const auto& o : mp.opset_import())
            known = known || o.domain() == node.domain;
          if (!known) {
            auto* o = mp.add_opset_import();
            o->set_domain(node.domain);
            o->set_version(1);
          }
        }
        for (const auto& [k, v] : node.int_attributes)
          set_int(n, k.c_str(), v);
        for (const auto& [k, v] : node.float_attributes)
          set_float(n, k.c_str(), v);
        block += count;
        break;
      }
    }
  }
  if (g->node_size() == 0)
    w.node("Identity");
  g->mutable_node(g->node_size() - 1)->set_output(0, "output");
  set_value_info(g->add_output(), "output",
                 shapes.empty() ? m.input : shapes.back(),
                 m.classes > 0 ? "logits, one per class" : "predicted values");
  add_meta(mp, "loss", devices::nn::to_string(m.loss.kind));
  if (m.loss.kind == devices::loss_kind::huber)
    add_meta(mp, "huber_delta", fmt::format("{}", m.loss.huber_delta));
  add_meta(mp, "classes", std::to_string(m.classes));
  if (!m.labels.empty())
    add_meta(mp, "labels", nlohmann::json(m.labels).dump());
  add_meta(mp, "input_format", m.input_format);
  if (!m.job.empty())
    add_meta(mp, "job", m.job);
  add_meta(mp, "epoch", std::to_string(m.epoch));
  if (!m.params_digest.empty())
    add_meta(mp, "params_digest", m.params_digest);
  for (const auto& [k, v] : m.extra)
    add_meta(mp, k, v);
  return mp;
}

void write_atomically(const std::string& path, const std::string& bytes) {
  const auto tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0)
    throw model_error(
        fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw model_error(
          fmt::format("{}: cannot write: {}", path, std::strerror(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw model_error(
        fmt::format("{}: cannot write: {}", path, std::strerror(err)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw model_error(
        fmt::format("{}: cannot write: {}", path, std::strerror(err)));
  }
}

// ---------------------------------------------------------------- reading

onnx::ModelProto read_proto(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec)
    throw model_error(fmt::format("{}: cannot read: {}", path, ec.message()));
  if (size > max_file_bytes)
    throw model_error(fmt::format(
        "{}: {} bytes is more than a model troupe reads (2 GiB)", path, size));
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  if (!in || !in.read(bytes.data(), static_cast<std::streamsize>(size)))
    throw model_error(fmt::format("{}: cannot read", path));
  onnx::ModelProto mp;
  if (size == 0 || !mp.ParseFromString(bytes))
    throw model_error(fmt::format(
        "{}: not an ONNX model (its bytes do not parse as one: truncated, "
        "corrupt or another kind of file)",
        path));
  if (!mp.has_graph() || mp.ir_version() <= 0)
    throw model_error(fmt::format(
        "{}: not an ONNX model (no {}: truncated, corrupt or another kind "
        "of file)",
        path, mp.has_graph() ? "IR version" : "graph"));
  try {
    onnx::checker::check_model(mp);
  } catch (const std::exception& e) {
    throw model_error(
        fmt::format("{}: the ONNX checker refuses it: {}", path, e.what()));
  }
  return mp;
}

std::int64_t opset_of(const onnx::ModelProto& mp) {
  for (const auto& o : mp.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx")
      return o.version();
  return 0;
}

struct graph_reader {
  const std::string& path;
  const onnx::GraphProto& g;
  std::map<std::string, const onnx::TensorProto*> inits;
  int index = 0; // node being read
  const onnx::NodeProto* n = nullptr;

  [[noreturn]] void fail(const std::string& why) const {
    throw model_error(fmt::format("{}: node {} ({} \"{}\"): {}", path, index,
                                  n->op_type(), n->name(), why));
  }

  const onnx::AttributeProto* attr(const char* name) const {
    for (const auto& a : n->attribute())
      if (a.name() == name)
        return &a;
    return nullptr;
  }
  std::int64_t int_attr(const char* name, std::int64_t fallback) const {
    const auto* a = attr(name);
    return a != nullptr ? a->i() : fallback;
  }
  float float_attr(const char* name, float fallback) const {
    const auto* a = attr(name);
    return a != nullptr ? a->f() : fallback;
  }
  std::vector<std::int64_t> ints_attr(const char* name) const {
    const auto* a = attr(name);
    if (a == nullptr)
      return {};
    return {a->ints().begin(), a->ints().end()};
  }
  void only_attrs(std::set<std::string> known) const {
    for (const auto& a : n->attribute())
      if (known.count(a.name()) == 0)
        fail(fmt::format("attribute {} is not one troupe reads", a.name()));
  }

  // Input k as an initializer (nullptr when the node has no input k).
  const onnx::TensorProto* weight(int k) const {
    if (n->input_size() <= k || n->input(k).empty())
      return nullptr;
    const auto it = inits.find(n->input(k));
    if (it == inits.end())
      fail(fmt::format("its input {} is not a constant (initializer); "
                       "troupe runs a chain of layers with fixed parameters",
                       n->input(k)));
    return it->second;
  }

  std::vector<float> floats(const onnx::TensorProto* t,
                            std::int64_t expected) const {
    if (t->data_type() != onnx::TensorProto::FLOAT)
      fail(fmt::format("{} is not float32 (ONNX data type {})", t->name(),
                       t->data_type()));
    if (t->data_location() == onnx::TensorProto::EXTERNAL)
      fail(fmt::format("{} keeps its data in an external file, which troupe "
                       "does not read",
                       t->name()));
    std::int64_t numel = 1;
    for (auto d : t->dims())
      numel *= d;
    if (numel != expected)
      fail(fmt::format("{} holds {} values, the layer needs {}", t->name(),
                       numel, expected));
    std::vector<float> out(static_cast<std::size_t>(numel));
    if (t->has_raw_data()) {
      if (t->raw_data().size() != out.size() * sizeof(float))
        fail(fmt::format("{}: {} bytes of data for {} values", t->name(),
                         t->raw_data().size(), numel));
      std::memcpy(out.data(), t->raw_data().data(), t->raw_data().size());
    } else {
      if (t->float_data_size() != numel)
        fail(fmt::format("{}: {} values of data for {}", t->name(),
                         t->float_data_size(), numel));
      std::copy(t->float_data().begin(), t->float_data().end(), out.begin());
    }
    return out;
  }

  std::vector<std::int64_t> dims(const onnx::TensorProto* t) const {
    return {t->dims().begin(), t->dims().end()};
  }

  // kernel_shape/strides/pads/dilations of Conv and the pools, which
  // troupe has square and symmetric.
  void window(layer_spec& l, std::int64_t kernel_from_weights) {
    auto ks = ints_attr("kernel_shape");
    if (ks.empty() && kernel_from_weights > 0)
      ks = {kernel_from_weights, kernel_from_weights};
    if (ks.size() != 2 || ks[0] != ks[1])
      fail("troupe runs square 2-D windows; kernel_shape is not one");
    l.kernel = ks[0];
    auto st = ints_attr("strides");
    if (st.empty())
      st = {1, 1};
    if (st.size() != 2 || st[0] != st[1])
      fail("troupe runs equal strides in both directions");
    l.stride = st[0];
    auto pads = ints_attr("pads");
    if (pads.empty())
      pads = {0, 0, 0, 0};
    if (pads.size() != 4 || std::count(pads.begin(), pads.end(), pads[0]) != 4)
      fail("troupe runs the same padding on every side");
    l.padding = pads[0];
    for (auto d : ints_attr("dilations"))
      if (d != 1)
        fail("troupe runs no dilation");
    if (const auto* a = attr("auto_pad");
        a != nullptr && a->s() != "NOTSET" && !a->s().empty())
      fail(fmt::format("auto_pad {} is not one troupe reads; give pads",
                       a->s()));
  }
};

} // namespace

void check_exportable(const shape_t& input,
                      const std::vector<layer_spec>& layers) {
  const auto shapes = devices::nn::infer_shapes(input, layers);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& in = i == 0 ? input : shapes[i - 1];
    if (layers[i].kind == layer_kind::softmax && in.size() != 1)
      throw model_error(fmt::format(
          "model.{}: a softmax over an image input {} has no ONNX op of "
          "its own; put a flatten before it to save the model",
          layer_name(i, layers[i]), devices::to_string(in)));
    if (layers[i].kind == layer_kind::custom)
      custom_node(i, layers[i], in);
  }
}

void save_onnx(const trained_model& m, const std::string& path) {
  onnx::ModelProto mp;
  try {
    check_exportable(m.input, m.layers);
    mp = to_proto(m);
    onnx::checker::check_model(mp);
  } catch (const model_error& e) {
    throw model_error(fmt::format("{}: not written: {}", path, e.what()));
  } catch (const std::exception& e) {
    throw model_error(
        fmt::format("{}: not written: the ONNX checker refuses the model: {}",
                    path, e.what()));
  }
  std::string bytes;
  if (!mp.SerializeToString(&bytes))
    throw model_error(fmt::format("{}: not written: the model does not "
                                  "serialize (over 2 GiB?)",
                                  path));
  write_atomically(path, bytes);
}

trained_model load_onnx(const std::string& path) {
  const auto mp = read_proto(path);
  const auto opset = opset_of(mp);
  if (opset < opset_oldest)
    throw model_error(
        fmt::format("{}: ONNX opset {}; troupe reads opset {} or later", path,
                    opset == 0 ? std::string("(none)") : std::to_string(opset),
                    opset_oldest));
  const auto& g = mp.graph();
  graph_reader r{path, g, {}};
  for (const auto& t : g.initializer())
    r.inits[t.name()] = &t;

  trained_model m;
  // The input: the one graph input that is no initializer.
  const onnx::ValueInfoProto* input = nullptr;
  for (const auto& v : g.input()) {
    if (r.inits.count(v.name()) > 0)
      continue;
    if (input != nullptr)
      throw model_error(fmt::format(
          "{}: the graph has more than one input ({}, {}); troupe runs "
          "models of one input",
          path, input->name(), v.name()));
    input = &v;
  }
  if (input == nullptr)
    throw model_error(fmt::format("{}: the graph has no input", path));
  {
    const auto& type = input->type();
    if (!type.has_tensor_type() ||
        type.tensor_type().elem_type() != onnx::TensorProto::FLOAT)
      throw model_error(fmt::format("{}: input {} is not a float32 tensor",
                                    path, input->name()));
    const auto& shape = type.tensor_type().shape();
    if (shape.dim_size() < 2)
      throw model_error(fmt::format(
          "{}: input {} has rank {}; troupe needs [N, features] or [N, C, "
          "H, W]",
          path, input->name(), shape.dim_size()));
    for (int d = 1; d < shape.dim_size(); ++d) {
      if (!shape.dim(d).has_dim_value() || shape.dim(d).dim_value() <= 0)
        throw model_error(
            fmt::format("{}: input {} dimension {} has no fixed size", path,
                        input->name(), d));
      m.input.push_back(shape.dim(d).dim_value());
    }
    if (m.input.size() != 1 && m.input.size() != 3)
      throw model_error(fmt::format(
          "{}: input {} is {} per sample; troupe needs [features] or "
          "[channels, height, width]",
          path, input->name(), devices::to_string(m.input)));
  }
  if (g.output_size() != 1)
    throw model_error(
        fmt::format("{}: the graph has {} outputs; troupe runs models of one",
                    path, g.output_size()));

  std::vector<std::vector<float>> blocks; // the parameters, in layout order
  std::string current = input->name();
  auto shape_now = [&]() -> shape_t {
    if (m.layers.empty())
      return m.input;
    try {
      return devices::nn::infer_shapes(m.input, m.layers).back();
    } catch (const devices::nn::shape_error& e) {
      r.fail(e.what());
    }
  };
  for (r.index = 0; r.index < g.node_size(); ++r.index) {
    r.n = &g.node(r.index);
    const auto& n = *r.n;
    const auto& op = n.op_type();
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      r.fail(fmt::format("op {} of domain {} is not one troupe can run "
                         "(troupe runs {})",
                         op, n.domain(), runnable_ops));
    if (n.input_size() < 1 || n.input(0) != current)
      r.fail(fmt::format("its first input is {}, not {} (the output of the "
                         "node before): troupe runs one chain of layers",
                         n.input_size() < 1 ? "missing" : n.input(0), current));
    if (n.output_size() < 1)
      r.fail("it has no output");
    const auto in = shape_now();
    layer_spec l;
    bool skip = false;
    if (op == "Gemm") {
      r.only_attrs({"alpha", "beta", "transA", "transB"});
      if (r.float_attr("alpha", 1) != 1.0f || r.float_attr("beta", 1) != 1.0f)
        r.fail("troupe runs Gemm with alpha = beta = 1");
      if (r.int_attr("transA", 0) != 0)
        r.fail("troupe runs Gemm with transA = 0");
      const bool tb = r.int_attr("transB", 0) != 0;
      const auto* wt = r.weight(1);
      if (wt == nullptr)
        r.fail("it has no weights");
      const auto wd = r.dims(wt);
      const auto width = devices::numel_of(in);
      if (wd.size() != 2 || wd[tb ? 1 : 0] != width)
        r.fail(fmt::format("weights {} {} do not take its input {} ({} "
                           "features){}",
                           wt->name(), devices::to_string(wd),
                           devices::to_string(in), width,
                           tb ? " with transB = 1" : ""));
      const auto units = wd[tb ? 0 : 1];
      auto w = r.floats(wt, width * units);
      if (tb) { // [units, width] -> [width, units]
        std::vector<float> t(w.size());
        for (std::int64_t o = 0; o < units; ++o)
          for (std::int64_t k = 0; k < width; ++k)
            t[static_cast<std::size_t>(k * units + o)] =
                w[static_cast<std::size_t>(o * width + k)];
        w.swap(t);
      }
      const auto* bt = r.weight(2);
      std::vector<float> b(static_cast<std::size_t>(units), 0.0f);
      if (bt != nullptr)
        b = r.floats(bt, units);
      l.kind = layer_kind::dense;
      l.units = units;
      blocks.push_back(std::move(w));
      blocks.push_back(std::move(b));
    } else if (op == "Conv") {
      r.only_attrs({"kernel_shape", "strides", "pads", "dilations", "group",
                    "auto_pad"});
      if (r.int_attr("group", 1) != 1)
        r.fail("troupe runs Conv with group = 1");
      const auto* wt = r.weight(1);
      if (wt == nullptr)
        r.fail("it has no weights");
      const auto wd = r.dims(wt);
      if (in.size() != 3)
        r.fail(fmt::format("its input {} is not an image",
                           devices::to_string(in)));
      if (wd.size() != 4 || wd[1] != in[0] || wd[2] != wd[3])
        r.fail(fmt::format("weights {} {} are not [out, {}, k, k]", wt->name(),
                           devices::to_string(wd), in[0]));
      l.kind = layer_kind::conv2d;
      l.units = wd[0];
      l.in_channels = in[0];
      r.window(l, wd[2]);
      if (l.kernel != wd[2])
        r.fail("kernel_shape differs from the weights' shape");
      blocks.push_back(r.floats(wt, devices::numel_of(wd)));
      const auto* bt = r.weight(2);
      blocks.push_back(bt != nullptr ? r.floats(bt, l.units)
                                     : std::vector<float>(
                                           static_cast<std::size_t>(l.units)));
    } else if (op == "MaxPool" || op == "AveragePool") {
      const bool max = op == "MaxPool";
      if (max)
        r.only_attrs({"kernel_shape", "strides", "pads", "dilations",
                      "auto_pad", "ceil_mode", "storage_order"});
      else
        r.only_attrs({"kernel_shape", "strides", "pads", "auto_pad",
                      "ceil_mode", "count_include_pad"});
      if (n.output_size() > 1 && !n.output(1).empty())
        r.fail("troupe does not produce MaxPool's indices");
      if (r.int_attr("ceil_mode", 0) != 0)
        r.fail("troupe runs pools with ceil_mode = 0");
      l.kind = max ? layer_kind::max_pool2d : layer_kind::avg_pool2d;
      r.window(l, 0);
      if (!max && l.padding > 0 && r.int_attr("count_include_pad", 0) != 1)
        r.fail("troupe's avg_pool2d counts the padding; this AveragePool "
               "has count_include_pad = 0");
    } else if (op == "Flatten") {
      r.only_attrs({"axis"});
      if (r.int_attr("axis", 1) != 1)
        r.fail("troupe runs Flatten with axis = 1");
      l.kind = layer_kind::flatten;
    } else if (op == "Relu" || op == "Sigmoid" || op == "Tanh") {
      r.only_attrs({});
      l.kind = op == "Relu"      ? layer_kind::relu
               : op == "Sigmoid" ? layer_kind::sigmoid
                                 : layer_kind::tanh;
    } else if (op == "Softmax") {
      r.only_attrs({"axis"});
      const auto axis = r.int_attr("axis", -1);
      if (in.size() != 1 || (axis != 1 && axis != -1))
        r.fail("troupe runs Softmax over the features of [N, features]");
      l.kind = layer_kind::softmax;
    } else if (op == "BatchNormalization") {
      r.only_attrs({"epsilon", "momentum", "training_mode", "spatial"});
      if (r.int_attr("training_mode", 0) != 0)
        r.fail("troupe reads BatchNormalization in inference form "
               "(training_mode = 0)");
      const auto c = in[0];
      l.kind = layer_kind::batch_norm;
      l.eps = r.float_attr("epsilon", 1e-5f);
      l.momentum = 1.0f - r.float_attr("momentum", 0.9f);
      const auto* s = r.weight(1);
      const auto* b = r.weight(2);
      const auto* mean = r.weight(3);
      const auto* var = r.weight(4);
      if (s == nullptr || b == nullptr || mean == nullptr || var == nullptr)
        r.fail("it needs scale, B, mean and var");
      blocks.push_back(r.floats(s, c));
      blocks.push_back(r.floats(b, c));
      auto running = r.floats(mean, c);
      auto v = r.floats(var, c);
      running.insert(running.end(), v.begin(), v.end());
      blocks.push_back(std::move(running));
    } else if (op == "LayerNormalization") {
      r.only_attrs({"axis", "epsilon", "stash_type"});
      const auto rank = static_cast<std::int64_t>(in.size()) + 1;
      const auto axis = r.int_attr("axis", -1);
      if (axis != 1 && axis != 1 - rank)
        r.fail("troupe normalizes each whole sample (axis = 1)");
      if (n.output_size() > 1)
        for (int k = 1; k < n.output_size(); ++k)
          if (!n.output(k).empty())
            r.fail("troupe does not produce Mean and InvStdDev outputs");
      l.kind = layer_kind::layer_norm;
      l.eps = r.float_attr("epsilon", 1e-5f);
      const auto d = devices::numel_of(in);
      const auto* s = r.weight(1);
      if (s == nullptr)
        r.fail("it has no Scale");
      blocks.push_back(r.floats(s, d));
      const auto* b = r.weight(2);
      blocks.push_back(b != nullptr
                           ? r.floats(b, d)
                           : std::vector<float>(static_cast<std::size_t>(d)));
    } else if (op == "Dropout" || op == "Identity") {
      if (op == "Dropout" && n.input_size() > 2 && !n.input(2).empty()) {
        const auto* t = r.weight(2);
        if (t != nullptr && t->data_type() == onnx::TensorProto::BOOL &&
            ((t->int32_data_size() > 0 && t->int32_data(0) != 0) ||
             (!t->raw_data().empty() && t->raw_data()[0] != 0)))
          r.fail("troupe runs Dropout in inference form (training_mode "
                 "false)");
      }
      skip = true;
    } else {
      r.fail(fmt::format("op {} is not one troupe can run (troupe runs {})", op,
                         runnable_ops));
    }
    current = n.output(0);
    if (skip)
      continue;
    m.layers.push_back(l);
    (void)shape_now(); // checks the layer against its input
  }
  if (g.output(0).name() != current)
    throw model_error(fmt::format(
        "{}: the graph's output {} is not the end of its chain of layers ({})",
        path, g.output(0).name(), current));

  const auto layout = devices::nn::param_layout(m.input, m.layers);
  if (layout.size() != blocks.size())
    throw model_error(fmt::format("{}: {} parameter tensors for a layout of {}",
                                  path, blocks.size(), layout.size()));
  m.params.resize(static_cast<std::size_t>(devices::nn::param_count(layout)));
  for (std::size_t b = 0; b < layout.size(); ++b) {
    if (static_cast<std::int64_t>(blocks[b].size()) != layout[b].size())
      throw model_error(fmt::format("{}: {} holds {} values, expected {}", path,
                                    layout[b].name, blocks[b].size(),
                                    layout[b].size()));
    std::copy(blocks[b].begin(), blocks[b].end(),
              m.params.begin() + layout[b].offset);
  }

  // Metadata.
  m.loss.kind = devices::loss_kind::mse;
  bool have_loss = false;
  for (const auto& p : mp.metadata_props()) {
    const std::string prefix = "troupe.";
    if (p.key().compare(0, prefix.size(), prefix) != 0)
      continue;
    const auto key = p.key().substr(prefix.size());
    const auto& v = p.value();
    auto bad = [&](const char* what) {
      return model_error(fmt::format("{}: metadata {} = \"{}\" is not {}", path,
                                     p.key(), v, what));
    };
    try {
      if (key == "loss") {
        const auto k = devices::nn::parse_loss_kind(v);
        if (!k)
          throw bad("a loss troupe knows");
        m.loss.kind = *k;
        have_loss = true;
      } else if (key == "huber_delta") {
        m.loss.huber_delta = std::stof(v);
      } else if (key == "classes") {
        m.classes = std::stoll(v);
        if (m.classes < 0)
          throw bad("a class count");
      } else if (key == "labels") {
        const auto j = nlohmann::json::parse(v);
        m.labels = j.get<std::vector<std::string>>();
      } else if (key == "input_format") {
        m.input_format = v;
      } else if (key == "job") {
        m.job = v;
      } else if (key == "epoch") {
        m.epoch = std::stoll(v);
      } else if (key == "params_digest") {
        m.params_digest = v;
      } else {
        m.extra[key] = v;
      }
    } catch (const model_error&) {
      throw;
    } catch (const std::exception&) {
      throw bad("valid");
    }
  }
  const auto shapes = devices::nn::infer_shapes(m.input, m.layers);
  const auto outputs =
      devices::numel_of(shapes.empty() ? m.input : shapes.back());
  if (!have_loss && m.classes > 0)
    m.loss.kind = devices::loss_kind::cross_entropy;
  if (m.loss.kind == devices::loss_kind::cross_entropy) {
    if (m.classes == 0)
      m.classes = outputs;
    if (m.classes != outputs)
      throw model_error(fmt::format(
          "{}: metadata says {} classes but the model has {} outputs", path,
          m.classes, outputs));
  }
  if (!m.labels.empty() &&
      static_cast<std::int64_t>(m.labels.size()) != m.classes)
    throw model_error(fmt::format("{}: {} labels for {} classes", path,
                                  m.labels.size(), m.classes));
  return m;
}

onnx_summary summarize_onnx(const std::string& path) {
  const auto mp = read_proto(path);
  onnx_summary s;
  s.ir_version = mp.ir_version();
  s.opset = opset_of(mp);
  s.producer =
      mp.producer_name() +
      (mp.producer_version().empty() ? "" : " " + mp.producer_version());
  for (const auto& n : mp.graph().node())
    s.ops.push_back(n.op_type());
  return s;
}

} // namespace troupe::modelio
