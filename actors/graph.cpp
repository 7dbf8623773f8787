#include "actors/graph.hpp"

#include "actors/model_file.hpp"
#include "runtime/config.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace troupe {

namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string quote_list(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const auto& s : v)
    q.push_back(quote(s));
  return fmt::format("[{}]", fmt::join(q, ", "));
}

} // namespace

struct graph::impl {
  std::string name;
  std::vector<std::string> layers;
  std::vector<std::pair<std::string, std::string>> keys; // key, TOML value
  std::vector<actors::stage_spec> stages;                // [[stage]]
  std::optional<actors::run_result> last;                // of run()
};

graph::graph(std::string name)
  : impl_(std::make_unique<impl>()) {
  impl_->name = std::move(name);
  set("job.name", quote(impl_->name));
}
graph::graph(const graph& o)
  : impl_(std::make_unique<impl>(*o.impl_)) {}
graph& graph::operator=(const graph& o) {
  *impl_ = *o.impl_;
  return *this;
}
graph::~graph() = default;

graph& graph::set(const std::string& key, const std::string& value) {
  for (auto& kv : impl_->keys)
    if (kv.first == key) {
      kv.second = value;
      return *this;
    }
  impl_->keys.emplace_back(key, value);
  return *this;
}

graph& graph::stage(const std::string& type,
                    const std::map<std::string, std::string>& settings) {
  impl_->stages.push_back({type, settings});
  return *this;
}

graph& graph::controller(const std::string& type,
                         const std::map<std::string, std::string>& settings) {
  set("controller.type", quote(type));
  for (const auto& [k, v] : settings)
    set("controller." + k, quote(v));
  return *this;
}

graph& graph::mode(const std::string& m) {
  return set("job.mode", quote(m));
}
graph& graph::seed(std::uint64_t s) {
  return set("job.seed", std::to_string(s));
}
graph& graph::epochs(std::int64_t n) {
  return set("job.epochs", std::to_string(n));
}
graph& graph::idx_data(const std::string& ti, const std::string& tl,
                       const std::string& vi, const std::string& vl) {
  set("data.format", quote("idx"));
  set("data.train", quote_list({ti, tl}));
  if (!vi.empty() || !vl.empty())
    set("data.test", quote_list({vi, vl}));
  return *this;
}
graph& graph::csv_data(const std::vector<std::string>& train,
                       const std::vector<std::string>& test,
                       const std::string& target, std::int64_t classes) {
  set("data.format", quote("csv"));
  set("data.train", quote_list(train));
  if (!test.empty())
    set("data.test", quote_list(test));
  if (!target.empty())
    set("data.target", quote(target));
  return set("data.classes", std::to_string(classes));
}
graph& graph::shards(std::int64_t n) {
  return set("data.shards", std::to_string(n));
}
graph& graph::batch(std::int64_t n) {
  return set("data.batch", std::to_string(n));
}
graph& graph::dense(std::int64_t units) {
  impl_->layers.push_back(
      fmt::format("{{ type = \"dense\", units = {} }}", units));
  return *this;
}
graph& graph::relu() {
  impl_->layers.emplace_back("{ type = \"relu\" }");
  return *this;
}
graph& graph::sigmoid() {
  impl_->layers.emplace_back("{ type = \"sigmoid\" }");
  return *this;
}
graph& graph::tanh() {
  impl_->layers.emplace_back("{ type = \"tanh\" }");
  return *this;
}
graph& graph::softmax() {
  impl_->layers.emplace_back("{ type = \"softmax\" }");
  return *this;
}
graph& graph::conv2d(std::int64_t channels, std::int64_t kernel,
                     std::int64_t stride, std::int64_t padding) {
  impl_->layers.push_back(
      fmt::format("{{ type = \"conv2d\", channels = {}, kernel = {}, "
                  "stride = {}, padding = {} }}",
                  channels, kernel, stride, padding));
  return *this;
}
namespace {
std::string pool(const char* type, std::int64_t kernel, std::int64_t stride,
                 std::int64_t padding) {
  return fmt::format(
      "{{ type = \"{}\", kernel = {}, stride = {}, padding = {} }}", type,
      kernel, stride > 0 ? stride : kernel, padding);
}
} // namespace
graph& graph::max_pool2d(std::int64_t kernel, std::int64_t stride,
                         std::int64_t padding) {
  impl_->layers.push_back(pool("max_pool2d", kernel, stride, padding));
  return *this;
}
graph& graph::avg_pool2d(std::int64_t kernel, std::int64_t stride,
                         std::int64_t padding) {
  impl_->layers.push_back(pool("avg_pool2d", kernel, stride, padding));
  return *this;
}
graph& graph::flatten() {
  impl_->layers.emplace_back("{ type = \"flatten\" }");
  return *this;
}
graph& graph::dropout(double rate) {
  impl_->layers.push_back(
      fmt::format("{{ type = \"dropout\", rate = {} }}", rate));
  return *this;
}
graph& graph::batch_norm(double eps, double momentum) {
  impl_->layers.push_back(fmt::format(
      "{{ type = \"batch_norm\", eps = {}, momentum = {} }}", eps, momentum));
  return *this;
}
graph& graph::layer_norm(double eps) {
  impl_->layers.push_back(
      fmt::format("{{ type = \"layer_norm\", eps = {} }}", eps));
  return *this;
}
graph& graph::layer(const std::string& type,
                    const std::map<std::string, std::string>& settings) {
  std::string text = fmt::format("{{ type = {}", quote(type));
  for (const auto& [k, v] : settings)
    text += fmt::format(", {} = {}", k, quote(v));
  impl_->layers.push_back(text + " }");
  return *this;
}
graph& graph::input_shape(const std::vector<std::int64_t>& shape) {
  return set("data.shape", fmt::format("[{}]", fmt::join(shape, ", ")));
}
graph& graph::loss(const std::string& name, double delta) {
  set("model.loss", quote(name));
  if (name == "huber")
    set("model.delta", fmt::format("{}", delta));
  return *this;
}
graph& graph::partitions(std::int64_t n) {
  return set("model.partitions", std::to_string(n));
}
graph& graph::optimizer(const std::string& type, double lr) {
  set("optimizer.type", quote(type));
  return set("optimizer.lr", fmt::format("{}", lr));
}
graph& graph::workers(std::int64_t n) {
  return set("cluster.workers", std::to_string(n));
}
graph& graph::threads(std::int64_t n) {
  return set("cluster.threads", std::to_string(n));
}

std::string graph::to_toml() const {
  // Group keys by table so the text reads like a hand-written pipeline.
  std::vector<std::string> tables;
  for (const auto& [k, v] : impl_->keys) {
    auto t = k.substr(0, k.find('.'));
    if (std::find(tables.begin(), tables.end(), t) == tables.end())
      tables.push_back(t);
  }
  if (std::find(tables.begin(), tables.end(), "model") == tables.end())
    tables.push_back("model");
  std::string out;
  for (const auto& t : tables) {
    out += fmt::format("[{}]\n", t);
    for (const auto& [k, v] : impl_->keys)
      if (k.substr(0, k.find('.')) == t)
        out += fmt::format("{} = {}\n", k.substr(k.find('.') + 1), v);
    if (t == "model" && !impl_->layers.empty())
      out += fmt::format("layers = [ {} ]\n", fmt::join(impl_->layers, ", "));
    out += "\n";
  }
  // Settings go as strings: a stage reads each as the type it wants.
  for (const auto& s : impl_->stages) {
    out += fmt::format("[[stage]]\ntype = {}\n", quote(s.type));
    for (const auto& [k, v] : s.params)
      out += fmt::format("{} = {}\n", k, quote(v));
    out += "\n";
  }
  return out;
}

actors::job_spec graph::spec() const {
  auto cfg = runtime::config::parse(to_toml(), "graph '" + impl_->name + "'");
  return actors::parse_job_spec(cfg);
}

actors::run_result graph::run(const actors::run_observer& observer) const {
  auto r = actors::run_job(spec(), observer);
  impl_->last = r;
  return r;
}

void graph::save(const std::string& path) const {
  if (!impl_->last)
    throw std::logic_error("graph::save: the graph has not run yet");
  save(*impl_->last, path);
}

void graph::save(const actors::run_result& result,
                 const std::string& path) const {
  modelio::save_onnx(actors::trained_model_of(spec(), result), path);
}

} // namespace troupe
