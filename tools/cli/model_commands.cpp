// troupe eval / predict / inspect: what a trained model does on data, and
// what a model or snapshot file holds. All run in this process, on the CPU.
#include "tools/cli/commands.hpp"
#include "tools/cli/metrics_json.hpp"

#include "actors/evaluation.hpp"
#include "actors/job_spec.hpp"
#include "data/dataset.hpp"
#include "devices/nn/model.hpp"
#include "modelio/onnx_model.hpp"
#include "runtime/config.hpp"
#include "runtime/digest.hpp"
#include "runtime/snapshot.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::cli {

namespace {

using json = nlohmann::ordered_json;

// A message for stderr and the exit code it goes with.
struct failure {
  std::string message;
  int code = exit_bad_input;
};

int report(const failure& f) {
  std::fprintf(stderr, "troupe: %s\n", f.message.c_str());
  return f.code;
}

// The samples a model can take: as many values per sample as its input.
void check_fits(const modelio::trained_model& m, const std::string& model_path,
                const data::dataset& ds, const std::string& what) {
  const auto want = devices::numel_of(m.input);
  if (ds.features != want)
    throw failure{fmt::format(
        "{}: the model's input is {} ({} values per sample) but {} has {} "
        "values per sample ({})",
        model_path, devices::to_string(m.input), want, what, ds.features,
        devices::to_string(ds.sample_shape))};
}

// Runs a command's body; its failures (bad input of every kind) become one
// message on stderr and exit 2.
template <class Body>
int reporting(const std::string& model, Body&& body) {
  try {
    return body();
  } catch (const failure& f) {
    return report(f);
  } catch (const modelio::model_error& e) {
    return report({e.what()});
  } catch (const data::data_error& e) {
    return report({e.what()});
  } catch (const devices::nn::shape_error& e) {
    return report({fmt::format("{}: {}", model, e.what())});
  }
}

devices::tensor params_of(const modelio::trained_model& m) {
  auto t = devices::tensor::empty({static_cast<std::int64_t>(m.params.size())});
  std::copy(m.params.begin(), m.params.end(), t.data());
  return t;
}

std::string fixed(double v) {
  return fmt::format("{:.6f}", v);
}

// ----------------------------------------------------------------- eval

struct eval_options {
  std::string model;
  std::string pipeline;
  std::vector<std::string> sets;
  bool json_out = false;
};

int eval(const eval_options& o) {
  return reporting(o.model, [&] {
    const auto m = modelio::load_onnx(o.model);
    actors::job_spec spec;
    try {
      auto cfg = runtime::config::load_file(o.pipeline, o.sets);
      spec = actors::parse_job_spec(cfg);
    } catch (const runtime::config_error& e) {
      throw failure{e.what()};
    }
    if (spec.test.empty())
      throw failure{fmt::format(
          "{}: data.test is not set: there is nothing to evaluate on",
          o.pipeline)};
    data::source_spec src;
    src.format = spec.format;
    src.files = spec.test;
    src.target = spec.target;
    // CSV: the model decides classification (its classes) or regression.
    src.classes = spec.format != "csv" ? -1
                  : m.classes == 0     ? 0
                  : spec.classes > 0   ? spec.classes
                                       : m.classes;
    src.labels = m.labels; // text class labels map as in training
    const auto ds = data::load(src);
    check_fits(m, o.model, ds, o.pipeline + "'s data.test");
    const bool classify = m.loss.kind == devices::loss_kind::cross_entropy;
    if (classify != (ds.classes > 0))
      throw failure{fmt::format(
          "{}: the model {} but {}'s data.test {}", o.model,
          classify ? fmt::format("classifies into {} classes", m.classes)
                   : std::string("predicts values"),
          o.pipeline,
          ds.classes > 0 ? "has class labels" : "has values to predict")};
    if (classify && ds.classes > m.classes)
      throw failure{fmt::format(
          "{}: the model has {} classes but {}'s data.test has labels up to "
          "{}",
          o.model, m.classes, o.pipeline, ds.classes - 1)};
    devices::nn::model net(devices::cpu(), m.input, m.layers, m.loss);
    if (!classify && ds.targets != net.outputs())
      throw failure{fmt::format(
          "{}: the model predicts {} values per sample but {}'s data.test "
          "has {}",
          o.model, net.outputs(), o.pipeline, ds.targets)};
    const auto e = actors::evaluate(net, params_of(m), ds);
    if (o.json_out) {
      json j{{"model", o.model},
             {"data", ds.description},
             {"samples", e.samples},
             {"test_loss", e.loss},
             {"test_accuracy", e.accuracy ? json(*e.accuracy) : json(nullptr)}};
      j["test_metrics"] = metrics_json(e.metrics, m.labels);
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("%s on %s: %lld samples  test_loss %s%s\n", o.model.c_str(),
                  ds.description.c_str(), static_cast<long long>(e.samples),
                  fixed(e.loss).c_str(),
                  e.accuracy ? ("  test_acc " + fixed(*e.accuracy)).c_str()
                             : "");
    }
    return exit_ok;
  });
}

// -------------------------------------------------------------- predict

struct predict_options {
  std::string model;
  std::vector<std::string> data;
  std::string format; // empty: the model's
  std::string out;
};

data::dataset read_samples(const predict_options& o,
                           const modelio::trained_model& m) {
  const auto format = o.format.empty() ? m.input_format : o.format;
  if (format == "idx") {
    if (o.data.size() == 1)
      return data::read_idx_images(o.data[0]);
    if (o.data.size() == 2) // images and labels: the labels are not used
      return data::read_idx(o.data[0], o.data[1]);
    throw failure{fmt::format(
        "--data: IDX takes an image file (and optionally its labels), got "
        "{} files",
        o.data.size())};
  }
  // A file with one column more than the model takes holds the target
  // column too (as the training data did): it is left out.
  const auto want = devices::numel_of(m.input);
  std::ifstream first(o.data.front());
  std::string line;
  while (std::getline(first, line) &&
         line.find_first_not_of(" \t\r") == std::string::npos) {
  }
  const auto columns =
      static_cast<std::int64_t>(std::count(line.begin(), line.end(), ',')) + 1;
  if (columns != want + 1)
    return data::read_csv_features(o.data);
  const auto t = m.extra.find("target");
  std::string skip = t == m.extra.end() ? "" : t->second;
  if (skip.empty() || line.find(skip) == std::string::npos)
    skip = std::to_string(columns - 1); // no header naming it: the last
  return data::read_csv_features(o.data, skip);
}

int predict(const predict_options& o) {
  return reporting(o.model, [&] {
    const auto m = modelio::load_onnx(o.model);
    const auto ds = read_samples(o, m);
    check_fits(m, o.model, ds, "--data");
    devices::nn::model net(devices::cpu(), m.input, m.layers, m.loss);
    const auto params = params_of(m);
    const bool classify = m.loss.kind == devices::loss_kind::cross_entropy;
    const auto k = net.outputs();
    std::ostringstream text;
    if (classify) {
      text << (m.labels.empty() ? "class" : "label");
      for (std::int64_t c = 0; c < k; ++c)
        text << ",p_"
             << (m.labels.empty() ? std::to_string(c)
                                  : m.labels[static_cast<std::size_t>(c)]);
    } else {
      for (std::int64_t c = 0; c < k; ++c)
        text << (c > 0 ? "," : "")
             << (k == 1 ? "value" : fmt::format("y{}", c));
    }
    text << '\n';
    const std::int64_t chunk = 1000;
    std::vector<double> p(static_cast<std::size_t>(k));
    for (std::int64_t first = 0; first < ds.samples; first += chunk) {
      const auto n = std::min(chunk, ds.samples - first);
      auto x = ds.x.slice(first * ds.features, n * ds.features)
                   .reshaped({n, ds.features});
      const auto& out = net.forward(params, x);
      for (std::int64_t i = 0; i < n; ++i) {
        const float* z = out.data() + i * k;
        if (!classify) {
          for (std::int64_t c = 0; c < k; ++c)
            text << (c > 0 ? "," : "") << fmt::format("{:.9g}", z[c]);
          text << '\n';
          continue;
        }
        // Softmax of the logits; the class is their argmax (the first of
        // equal ones), as accuracy counts it.
        const auto arg = std::max_element(z, z + k) - z;
        double sum = 0;
        for (std::int64_t c = 0; c < k; ++c)
          sum += p[static_cast<std::size_t>(c)] =
              std::exp(static_cast<double>(z[c]) - static_cast<double>(z[arg]));
        text << (m.labels.empty() ? std::to_string(arg)
                                  : m.labels[static_cast<std::size_t>(arg)]);
        for (std::int64_t c = 0; c < k; ++c)
          text << fmt::format(",{:.6g}", p[static_cast<std::size_t>(c)] / sum);
        text << '\n';
      }
    }
    const auto s = text.str();
    if (o.out.empty()) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      return exit_ok;
    }
    const auto tmp = fmt::format("{}.tmp-{}", o.out, ::getpid());
    {
      std::ofstream f(tmp, std::ios::binary);
      f << s;
      f.close();
      if (!f)
        throw failure{fmt::format("--out {}: cannot write", o.out)};
    }
    if (std::rename(tmp.c_str(), o.out.c_str()) != 0) {
      std::remove(tmp.c_str());
      throw failure{fmt::format("--out {}: cannot write", o.out)};
    }
    std::fprintf(stderr, "troupe: %lld predictions written to %s\n",
                 static_cast<long long>(ds.samples), o.out.c_str());
    return exit_ok;
  });
}

// -------------------------------------------------------------- inspect

struct inspect_options {
  std::string file;
  bool json_out = false;
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() &&
         s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

json inspect_snapshot(const runtime::shard_snapshot& s) {
  json j{{"kind", "snapshot"},
         {"format_version", runtime::snapshot_format_version},
         {"checksum", "ok (CRC-32 of the body)"},
         {"param_shard", s.shard},
         {"version", s.version},
         {"offset", s.offset},
         {"elements", s.params.numel()},
         {"model_elements", s.total},
         {"optimizer_tensors", s.optimizer_state.size()},
         {"ledger_workers", s.ledger.size()},
         {"job_fingerprint", s.job}};
  return j;
}

json inspect_model(const std::string& path) {
  const auto s = modelio::summarize_onnx(path);
  const auto m = modelio::load_onnx(path);
  const auto digest =
      runtime::sha256_hex(m.params.data(), m.params.size() * sizeof(float));
  json layers = json::array();
  const auto shapes = devices::nn::infer_shapes(m.input, m.layers);
  for (std::size_t i = 0; i < m.layers.size(); ++i)
    layers.push_back(fmt::format("{} -> {}",
                                 devices::nn::to_string(m.layers[i].kind),
                                 devices::to_string(shapes[i])));
  json j{{"kind", "onnx"},
         {"ir_version", s.ir_version},
         {"opset", s.opset},
         {"producer", s.producer},
         {"input", m.input},
         {"output", shapes.empty() ? m.input : shapes.back()},
         {"ops", s.ops},
         {"layers", layers},
         {"param_count", m.params.size()},
         {"params_digest", digest},
         {"checksum",
          m.params_digest.empty()
              ? "no digest recorded"
              : (m.params_digest == digest
                     ? "ok (matches troupe.params_digest)"
                     : "MISMATCH: troupe.params_digest is " + m.params_digest)},
         {"loss", devices::nn::to_string(m.loss.kind)},
         {"classes", m.classes},
         {"labels", m.labels},
         {"input_format", m.input_format},
         {"job", m.job},
         {"epoch", m.epoch}};
  return j;
}

int inspect(const inspect_options& o) {
  json j;
  try {
    try {
      j = inspect_snapshot(runtime::read_snapshot_file(o.file));
    } catch (const runtime::snapshot_error& snap) {
      if (ends_with(o.file, ".snap"))
        throw failure{snap.what()};
      try {
        j = inspect_model(o.file);
      } catch (const modelio::model_error& model) {
        if (ends_with(o.file, ".onnx"))
          throw failure{model.what()};
        throw failure{fmt::format(
            "{}: neither a troupe snapshot ({}) nor an ONNX model ({})", o.file,
            snap.what(), model.what())};
      }
    }
  } catch (const failure& f) {
    return report(f);
  }
  if (o.json_out) {
    std::printf("%s\n", j.dump().c_str());
    return exit_ok;
  }
  std::printf("%s\n", o.file.c_str());
  for (const auto& [key, value] : j.items())
    std::printf("  %-18s %s\n", key.c_str(),
                value.is_string() ? value.get<std::string>().c_str()
                                  : value.dump().c_str());
  return exit_ok;
}

} // namespace

void add_model_commands(CLI::App& app, int* code) {
  {
    auto o = std::make_shared<eval_options>();
    auto* cmd = app.add_subcommand(
        "eval", "Evaluate a saved model (ONNX) on a pipeline's data.test");
    cmd->add_option("model", o->model, "Model file (ONNX)")->required();
    cmd->add_option("pipeline", o->pipeline, "Pipeline file (TOML)")
        ->required();
    cmd->add_option("--set", o->sets,
                    "Override a pipeline key: KEY=VALUE; repeatable");
    cmd->add_flag("--json", o->json_out,
                  "Print one JSON object (test_loss, test_accuracy, "
                  "confusion matrix)");
    cmd->callback([o, code] { *code = eval(*o); });
  }
  {
    auto o = std::make_shared<predict_options>();
    auto* cmd = app.add_subcommand(
        "predict", "Predict with a saved model (ONNX): one CSV row per sample");
    cmd->add_option("model", o->model, "Model file (ONNX)")->required();
    cmd->add_option("--data", o->data,
                    "Samples: an IDX image file, or CSV files of feature "
                    "columns (a target column, if there, is left out)")
        ->required()
        ->expected(1, -1);
    cmd->add_option("--format", o->format,
                    "idx or csv (default: what the model was trained on)")
        ->check(CLI::IsMember({"idx", "csv"}));
    cmd->add_option("--out", o->out, "Write the CSV here (default: stdout)");
    cmd->callback([o, code] { *code = predict(*o); });
  }
  {
    auto o = std::make_shared<inspect_options>();
    auto* cmd = app.add_subcommand(
        "inspect", "Show what a model (ONNX) or snapshot file holds");
    cmd->add_option("file", o->file, "A .onnx model or .snap snapshot")
        ->required();
    cmd->add_flag("--json", o->json_out, "Print one JSON object");
    cmd->callback([o, code] { *code = inspect(*o); });
  }
}

} // namespace troupe::cli
