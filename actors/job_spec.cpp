#include "actors/job_spec.hpp"
#include "actors/stages.hpp"
#include "actors/update_rule.hpp"

#include "devices/backends.hpp"
#include "devices/nn/custom.hpp"

#include "data/sampler.hpp"
#include "runtime/config.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

namespace troupe::actors {

namespace nn = devices::nn;
using runtime::config_error;

namespace {

// The per-sample shape after each layer; throws config_error naming the
// layer, its input shape and the cause.
std::vector<devices::shape_t> check_shapes(const job_spec& s) {
  try {
    return nn::infer_shapes(s.input_shape, s.layers);
  } catch (const nn::shape_error& e) {
    throw config_error(fmt::format("model.{} (data.shape {})", e.what(),
                                   devices::to_string(s.input_shape)));
  }
}

} // namespace

stages::sample_info samples_of(const job_spec& s) {
  stages::sample_info info;
  info.shape = s.model_input();
  info.features = s.inputs;
  info.classes = s.classification() ? s.outputs : 0;
  return info;
}

void check_stages(const job_spec& s) {
  try {
    for (std::size_t i = 0; i < s.stages.size(); ++i)
      stages::make_data_stage(
          s.stages[i].type,
          stages::params(fmt::format("stage[{}]", i), s.stages[i].params),
          samples_of(s));
    for (std::size_t i = 0; i < s.metrics.size(); ++i)
      stages::make_metric(
          s.metrics[i].type,
          stages::params(fmt::format("metric[{}]", i), s.metrics[i].params),
          samples_of(s));
  } catch (const std::invalid_argument& e) {
    throw config_error(e.what());
  }
}

job_spec parse_job_spec(runtime::config& c) {
  job_spec s;
  constexpr auto big = std::numeric_limits<std::int64_t>::max();
  // [job]
  s.name = c.get_string("job.name", "job");
  s.mode = c.get_string("job.mode", "sync", {"sync", "async", "ssp"});
  s.staleness = c.get_int("job.staleness", 0, 0, 1'000'000);
  s.seed = static_cast<std::uint64_t>(c.get_int("job.seed", 42, 0, big));
  s.epochs = c.get_int("job.epochs", 1, 1, 1'000'000);
  if (c.has("job.patience"))
    s.patience = c.get_int("job.patience", 1, 1, 1'000'000);
  s.monitor = c.get_string(
      "job.monitor", "test_loss",
      {"test_loss", "test_accuracy", "test_mae", "test_rmse", "test_r2"});
  if (c.has("job.monitor") && s.patience == 0)
    c.fail("job.monitor", "only used with job.patience (early stopping)");
  // [data]
  s.format = c.get_string("data.format", "idx", {"idx", "csv"});
  s.train = c.get_paths("data.train");
  if (s.train.empty())
    c.fail("data.train", "required: the training data files");
  s.test = c.get_paths("data.test");
  if (s.patience > 0 && s.test.empty())
    c.fail("job.patience",
           "early stopping watches the test set: set data.test");
  if (s.format == "idx") {
    if (s.train.size() != 2)
      c.fail("data.train", fmt::format("format \"idx\" needs [images, labels], "
                                       "got {} file(s)",
                                       s.train.size()));
    if (!s.test.empty() && s.test.size() != 2)
      c.fail("data.test", fmt::format("format \"idx\" needs [images, labels], "
                                      "got {} file(s)",
                                      s.test.size()));
  }
  s.shards = c.get_int("data.shards", 1, 1, 4096);
  s.batch = c.get_int("data.batch", 64, 1, 1 << 24);
  s.prefetch = c.get_int("data.prefetch", 4, 1, 1024);
  if (c.has("data.target")) {
    // A column name or a column index.
    if (s.format != "csv")
      c.fail("data.target", "only used with format = \"csv\"");
    s.target = c.get_name_or_index("data.target");
  }
  if (c.has("data.classes")) {
    if (s.format != "csv")
      c.fail("data.classes", "only used with format = \"csv\" (IDX labels "
                             "give the classes)");
    s.classes = c.get_int("data.classes", 0, 0, 1 << 20);
  }
  if (c.has("data.shape")) {
    const auto rank = c.array_size("data.shape");
    if (rank != 1 && rank != 3)
      c.fail("data.shape", fmt::format("needs [features] or [channels, "
                                       "height, width], got {} value(s)",
                                       rank));
    for (std::size_t i = 0; i < rank; ++i)
      s.input_shape.push_back(
          c.get_int(fmt::format("data.shape[{}]", i), 1, 1, 1 << 24));
  }
  // [model]
  const auto n_layers = c.array_size("model.layers");
  if (n_layers == 0)
    c.fail("model.layers", "required: at least one dense layer");
  bool any_weights = false;
  for (std::size_t i = 0; i < n_layers; ++i) {
    const auto key = fmt::format("model.layers[{}]", i);
    const auto type = c.get_string(key + ".type", "");
    auto kind = nn::parse_layer_kind(type);
    if (!kind && nn::has_layer(type))
      kind = nn::layer_kind::custom;
    if (!kind) {
      const auto custom = nn::layer_types();
      c.fail(key + ".type",
             type.empty()
                 ? std::string("required: the layer type")
                 : fmt::format(
                       "unknown layer type \"{}\" (known: {}; {})", type,
                       nn::layer_kind_names(),
                       custom.empty()
                           ? std::string("custom layers come from a plugin: "
                                         "--plugin LIB.so")
                           : fmt::format("registered: {}",
                                         fmt::join(custom, ", "))));
    }
    nn::layer_spec l{*kind, 0};
    auto required = [&](const char* name) {
      if (!c.has(key + "." + name))
        c.fail(key, fmt::format("a {} layer needs {}", type, name));
    };
    // Keys a kind does not read are refused by check_unknown below.
    switch (*kind) {
      case nn::layer_kind::dense:
        required("units");
        l.units = c.get_int(key + ".units", 0, 1, 1 << 24);
        any_weights = true;
        break;
      case nn::layer_kind::conv2d:
        required("channels");
        required("kernel");
        l.units = c.get_int(key + ".channels", 0, 1, 1 << 16);
        l.kernel = c.get_int(key + ".kernel", 0, 1, 1 << 12);
        l.stride = c.get_int(key + ".stride", 1, 1, 1 << 12);
        l.padding = c.get_int(key + ".padding", 0, 0, 1 << 12);
        l.in_channels = c.get_int(key + ".in_channels", 0, 1, 1 << 16);
        any_weights = true;
        break;
      case nn::layer_kind::max_pool2d:
      case nn::layer_kind::avg_pool2d:
        required("kernel");
        l.kernel = c.get_int(key + ".kernel", 0, 1, 1 << 12);
        l.stride = c.get_int(key + ".stride", l.kernel, 1, 1 << 12);
        l.padding = c.get_int(key + ".padding", 0, 0, 1 << 12);
        break;
      case nn::layer_kind::dropout: {
        const auto rate = c.get_float(key + ".rate", 0.5, -1e30, 1e30);
        if (!(rate >= 0.0 && rate < 1.0))
          c.fail(key + ".rate",
                 fmt::format("a dropout rate must be in [0, 1), got {}", rate));
        l.rate = static_cast<float>(rate);
        break;
      }
      case nn::layer_kind::batch_norm:
        l.eps = static_cast<float>(c.get_float(key + ".eps", 1e-5, 0, 1, true));
        l.momentum =
            static_cast<float>(c.get_float(key + ".momentum", 0.1, 0, 1));
        break;
      case nn::layer_kind::layer_norm:
        l.eps = static_cast<float>(c.get_float(key + ".eps", 1e-5, 0, 1, true));
        break;
      case nn::layer_kind::custom:
        l.custom = type;
        for (const auto& k : c.keys(key))
          if (k != "type")
            l.settings[k] = c.get_scalar_text(key + "." + k);
        try {
          // Its settings, checked where they are written.
          nn::make_layer(l, key);
        } catch (const std::invalid_argument& e) {
          throw config_error(
              fmt::format("{}: {}", c.where(key + ".type"), e.what()));
        }
        break;
      default:
        break;
    }
    s.layers.push_back(l);
  }
  if (!any_weights)
    c.fail("model.layers", "needs at least one dense or conv2d layer");
  if (!s.input_shape.empty()) {
    // Before any data is read (else once it is), at the layers' place in
    // the pipeline.
    try {
      check_shapes(s);
    } catch (const config_error& e) {
      throw config_error(
          fmt::format("{}: {}", c.where("model.layers"), e.what()));
    }
  }
  const auto loss = c.get_string("model.loss", "cross_entropy",
                                 {"cross_entropy", "mse", "huber"});
  s.loss.kind = *nn::parse_loss_kind(loss);
  s.loss.huber_delta =
      static_cast<float>(c.get_float("model.delta", 1.0, 0.0, 1e30, true));
  if (c.has("model.delta") && s.loss.kind != devices::loss_kind::huber)
    c.fail("model.delta", "only used with loss = \"huber\"");
  if (s.loss.kind == devices::loss_kind::cross_entropy &&
      s.layers.back().kind == nn::layer_kind::softmax)
    c.fail(fmt::format("model.layers[{}].type", n_layers - 1),
           "a final softmax layer with loss = \"cross_entropy\" would apply "
           "softmax twice: cross_entropy takes logits and applies it itself");
  s.partitions = c.get_int("model.partitions", 1, 1, 4096);
  // [optimizer]
  const auto opt =
      c.get_string("optimizer.type", "adam",
                   {"sgd", "momentum", "nesterov", "adam", "adamw"});
  auto& o = s.optimizer;
  o.kind = *nn::parse_optimizer_kind(opt);
  o.lr = static_cast<float>(c.get_float("optimizer.lr", 0.001, 0.0, 1e6, true));
  o.momentum =
      static_cast<float>(c.get_float("optimizer.momentum", 0.9, 0.0, 1.0));
  o.beta1 = static_cast<float>(c.get_float("optimizer.beta1", 0.9, 0.0, 1.0));
  o.beta2 = static_cast<float>(c.get_float("optimizer.beta2", 0.999, 0.0, 1.0));
  if (o.beta1 >= 1.0f)
    c.fail("optimizer.beta1", "must be below 1");
  if (o.beta2 >= 1.0f)
    c.fail("optimizer.beta2", "must be below 1");
  o.eps =
      static_cast<float>(c.get_float("optimizer.eps", 1e-8, 0.0, 1.0, true));
  // AdamW's default decay is PyTorch's; the others' is none.
  o.weight_decay = static_cast<float>(c.get_float(
      "optimizer.weight_decay",
      o.kind == devices::optimizer_kind::adamw ? 0.01 : 0.0, 0.0, 1e6));
  s.clip_norm = c.get_float("optimizer.clip_norm", 0.0, 0.0, 1e12);
  if (s.clip_norm > 0 && s.mode != "sync")
    c.fail("optimizer.clip_norm",
           fmt::format("clips the summed gradient of a step, which mode "
                       "\"{}\" does not have (each worker's gradient is "
                       "applied alone); use mode = \"sync\"",
                       s.mode));
  if (c.has("optimizer.schedule")) {
    const std::string key = "optimizer.schedule";
    bool table = true;
    try {
      c.keys(key);
    } catch (const config_error&) {
      table = false;
    }
    auto& sch = s.schedule;
    const std::vector<std::string> types{"constant", "step", "cosine"};
    sch.type = table ? c.get_string(key + ".type", "constant", types)
                     : c.get_string(key, "constant", types);
    if (table) {
      sch.warmup_steps = c.get_int(key + ".warmup_steps", 0, 0, 1'000'000'000);
      auto only = [&](const char* field, const char* type) {
        if (c.has(key + "." + field) && sch.type != type)
          c.fail(key + "." + field,
                 fmt::format("only used with type = \"{}\" (this schedule "
                             "is \"{}\")",
                             type, sch.type));
      };
      only("step_size", "step");
      only("gamma", "step");
      only("min_lr", "cosine");
      if (sch.type == "step") {
        if (!c.has(key + ".step_size"))
          c.fail(key + ".step_size",
                 "required with type = \"step\": steps between decays");
        sch.step_size = c.get_int(key + ".step_size", 1, 1, 1'000'000'000);
        sch.gamma = c.get_float(key + ".gamma", 0.1, 0.0, 1.0, true);
      }
      if (sch.type == "cosine")
        sch.min_lr = c.get_float(key + ".min_lr", 0.0, 0.0, o.lr);
    } else if (sch.type == "step") {
      c.fail(key, "type \"step\" needs step_size: write [optimizer.schedule] "
                  "with type = \"step\" and step_size");
    }
  }
  // [cluster]
  s.local_nodes = c.get_int("cluster.local_nodes", 1, 1, 64);
  s.workers = c.get_int("cluster.workers", 1, 1, 4096);
  s.device = c.get_string("cluster.device", "cpu", {"cpu", "cuda", "any"});
  if (s.device == "cuda" && !devices::has_backend("cuda"))
    c.fail("cluster.device",
           "\"cuda\" needs the CUDA backend, which this build does not have; "
           "use \"cpu\" or \"any\"");
  s.threads = c.get_int("cluster.threads", 0, 0, 1024);
  // [supervision]: validated now so pipelines stay portable.
  s.strategy = c.get_string("supervision.strategy", "one_for_one",
                            {"one_for_one", "one_for_all", "rest_for_one"});
  s.max_restarts = c.get_int("supervision.max_restarts", 10, 0, 1'000'000);
  s.within_s = c.get_float("supervision.within_s", 60, 0, 1e9, true);
  s.snapshot_every = c.get_int("supervision.snapshot_every", 100, 1, big);
  s.heartbeat_s = c.get_float("supervision.heartbeat_s", 0.5, 0, 3600, true);
  s.heartbeat_timeout_s =
      c.get_float("supervision.heartbeat_timeout_s", 5, 0, 86400, true);
  if (s.heartbeat_timeout_s <= s.heartbeat_s)
    c.fail("supervision.heartbeat_timeout_s",
           "must be longer than supervision.heartbeat_s");
  // [placement]
  // Aggregators follow their workers (one per node).
  std::vector<std::string> placeable;
  for (auto r : all_roles)
    if (r != role::aggregator)
      placeable.push_back(name_of(r));
  c.touch("placement");
  for (const auto& role : c.keys("placement")) {
    const auto key = "placement." + role;
    if (std::find(placeable.begin(), placeable.end(), role) == placeable.end())
      c.fail(key, fmt::format("unknown role (roles that can be placed: {})",
                              fmt::join(placeable, ", ")));
    auto nodes = c.get_strings(key);
    if (nodes.empty())
      c.fail(key, "needs at least one node name");
    s.placement[role] = std::move(nodes);
  }
  // [[stage]], [controller] and [[metric]]: the user's registered types
  enum class custom_kind { stage, controller, metric };
  auto custom = [&](const std::string& key, custom_kind kind) {
    stage_spec st;
    st.type = c.get_string(key + ".type", "");
    if (st.type.empty())
      c.fail(key + ".type",
             fmt::format("missing: the registered name of the {}",
                         kind == custom_kind::stage        ? "stage"
                         : kind == custom_kind::controller ? "controller"
                                                           : "metric"));
    if (kind == custom_kind::metric)
      st.name = c.get_string(key + ".name", st.type);
    for (const auto& k : c.keys(key))
      if (k != "type" && (kind != custom_kind::metric || k != "name"))
        st.params[k] = c.get_scalar_text(key + "." + k);
    const stages::params p(key, st.params);
    try {
      // Made here to check the type and settings; data stages and metrics
      // are made again with the data's shape in resolve_job_spec.
      if (kind == custom_kind::stage)
        stages::make_data_stage(st.type, p, {});
      else if (kind == custom_kind::controller)
        stages::make_controller(st.type, p);
      else
        stages::make_metric(st.type, p, {});
    } catch (const std::invalid_argument& e) {
      throw config_error(
          fmt::format("{}: {}", c.where(key + ".type"), e.what()));
    }
    return st;
  };
  const auto stage_count = c.array_size("stage");
  if (stage_count > 8)
    c.fail("stage",
           fmt::format("{} stages; at most 8 are chained", stage_count));
  for (std::size_t i = 0; i < stage_count; ++i)
    s.stages.push_back(custom(fmt::format("stage[{}]", i), custom_kind::stage));
  if (c.has("controller"))
    s.controller = custom("controller", custom_kind::controller);
  const auto metric_count = c.array_size("metric");
  if (metric_count > 0 && s.test.empty())
    c.fail("metric", "needs data.test: metrics are figures of the test set");
  if (metric_count > 32)
    c.fail("metric", fmt::format("{} metrics; at most 32", metric_count));
  for (std::size_t i = 0; i < metric_count; ++i) {
    const auto key = fmt::format("metric[{}]", i);
    auto m = custom(key, custom_kind::metric);
    static const char* const taken[] = {
        "test_loss", "test_accuracy", "train_loss", "accuracy", "mae", "rmse",
        "r2",        "macro_f1",      "per_class",  "confusion"};
    for (const auto* t : taken)
      if (m.name == t)
        c.fail(key + ".name",
               fmt::format("\"{}\" is a built-in figure; choose another name",
                           m.name));
    for (const auto& other : s.metrics)
      if (other.name == m.name)
        c.fail(key + ".name",
               fmt::format("\"{}\" names an earlier metric too", m.name));
    s.metrics.push_back(std::move(m));
  }
  // [[chaos]]
  std::vector<std::string> killable;
  for (auto r : all_roles)
    killable.push_back(name_of(r));
  const auto events = c.array_size("chaos");
  std::map<std::string, std::vector<std::size_t>> by_target;
  for (std::size_t i = 0; i < events; ++i) {
    const auto key = fmt::format("chaos[{}]", i);
    chaos_event e;
    const bool kill = c.has(key + ".kill"), freeze = c.has(key + ".freeze");
    if (kill == freeze)
      c.fail(key, "needs exactly one of kill = \"ROLE:INDEX\" or "
                  "\"node:NAME\", and freeze = \"node:NAME\"");
    e.action = kill ? "kill" : "freeze";
    const auto tkey = key + "." + e.action;
    const auto target = c.get_string(tkey, "");
    const auto colon = target.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == target.size())
      c.fail(tkey,
             fmt::format("\"{}\" is not ROLE:INDEX or node:NAME", target));
    e.role = target.substr(0, colon);
    const auto rest = target.substr(colon + 1);
    if (e.role == "node") {
      e.node = rest; // checked against the job's nodes once they are known
    } else {
      if (e.action == "freeze")
        c.fail(tkey, "only a node can be frozen (freeze = \"node:NAME\")");
      if (std::find(killable.begin(), killable.end(), e.role) == killable.end())
        c.fail(tkey, fmt::format("unknown role \"{}\" (roles: {}, or node)",
                                 e.role, fmt::join(killable, ", ")));
      std::size_t used = 0;
      long long v = -1;
      try {
        v = std::stoll(rest, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != rest.size() || v < 0 || v > 1'000'000)
        c.fail(tkey, fmt::format("\"{}\" is not an index", rest));
      e.index = static_cast<std::int32_t>(v);
    }
    if (!c.has(key + ".at_step"))
      c.fail(key, "needs at_step (the global step, from 0)");
    e.at_step = c.get_int(key + ".at_step", 0, 0, big);
    by_target[e.target()].push_back(s.chaos.size());
    s.chaos.push_back(std::move(e));
  }
  // The k-th event on an actor (by step) hits its k-th incarnation.
  for (auto& [target, idx] : by_target) {
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
      return s.chaos[a].at_step < s.chaos[b].at_step;
    });
    for (std::size_t k = 0; k < idx.size(); ++k)
      s.chaos[idx[k]].incarnation = static_cast<std::int64_t>(k);
  }
  // [testing]
  s.slow_worker = c.get_int("testing.slow_worker", -1, -1, 4095);
  s.slow_ms = c.get_int("testing.slow_ms", 0, 0, 60'000);
  // One without the other would do nothing.
  if (s.slow_ms > 0 && s.slow_worker < 0)
    c.fail("testing.slow_ms",
           "needs testing.slow_worker (the worker rank to slow down)");
  if (s.slow_worker >= 0 && s.slow_ms == 0)
    c.fail("testing.slow_worker",
           "needs testing.slow_ms (how long each of its steps takes at least)");
  if (s.slow_worker >= s.workers)
    c.fail("testing.slow_worker",
           fmt::format("{} is not a worker rank (cluster.workers = {})",
                       s.slow_worker, s.workers));
  s.detached_compute = c.get_bool("testing.detached_compute", false);
  for (std::size_t i = 0; i < s.layers.size(); ++i)
    if (s.layers[i].kind == nn::layer_kind::custom && s.device != "cpu")
      c.fail("cluster.device",
             fmt::format("\"{}\" may put workers on a GPU, but "
                         "model.layers[{}] ({}) is a custom layer, which "
                         "computes on the CPU; use cluster.device = \"cpu\"",
                         s.device, i, s.layers[i].custom));
  c.check_unknown();
  return s;
}

void resolve_job_spec(job_spec& s, const data_facts& train,
                      const data_facts* test) {
  s.inputs = train.features;
  s.labels = train.labels;
  if (s.input_shape.empty()) {
    s.input_shape = train.sample_shape.empty()
                        ? devices::shape_t{train.features}
                        : train.sample_shape;
  } else if (devices::numel_of(s.input_shape) != train.features) {
    throw config_error(fmt::format(
        "data.shape: {} holds {} values but each sample of {} has {}",
        devices::to_string(s.input_shape), devices::numel_of(s.input_shape),
        train.description, train.features));
  }
  s.outputs = devices::numel_of(check_shapes(s).back());
  if (s.patience > 0) {
    const bool for_classes = s.monitor == "test_accuracy";
    const bool for_values = s.monitor == "test_mae" ||
                            s.monitor == "test_rmse" || s.monitor == "test_r2";
    if ((for_classes && !s.classification()) ||
        (for_values && s.classification()))
      throw config_error(
          fmt::format("job.monitor: {} is not measured for {}", s.monitor,
                      s.classification() ? "classification" : "regression"));
  }
  s.train_samples = train.samples;
  if (s.classification()) {
    if (train.classes == 0)
      throw config_error(
          "model.loss: cross_entropy needs class labels, but the training "
          "data is a regression set (data.classes = 0)");
    const auto classes = std::max(train.classes, test ? test->classes : 0);
    if (classes > s.outputs)
      throw config_error(fmt::format(
          "model.layers: the last layer has {} outputs but the data has "
          "{} classes",
          s.outputs, classes));
  } else {
    if (s.outputs != train.targets)
      throw config_error(fmt::format(
          "model.layers: the last layer has {} outputs but the data has "
          "{} target value(s) per sample",
          s.outputs, train.targets));
  }
  if (test != nullptr && test->features != train.features)
    throw config_error(
        fmt::format("data.test: {} features per sample, but data.train has {}",
                    test->features, train.features));
  try {
    data::batch_plan plan(train.samples, s.shards, s.workers, s.batch, s.seed);
    s.steps_per_epoch = plan.steps_per_epoch();
  } catch (const std::invalid_argument& e) {
    throw config_error(e.what());
  }
  check_stages(s);
  const auto params =
      nn::param_count(nn::param_layout(s.input_shape, s.layers));
  if (s.partitions > params)
    throw config_error(fmt::format(
        "model.partitions = {} exceeds the {} parameters of the model",
        s.partitions, params));
}

std::string chaos_event::target() const {
  return role == "node" ? "node:" + node : fmt::format("{}:{}", role, index);
}

std::int64_t job_spec::chaos_kill_step(role r, std::int32_t index) const {
  for (const auto& e : chaos)
    if (e.action == "kill" && e.role == name_of(r) && e.index == index &&
        e.incarnation == incarnation)
      return e.at_step;
  return -1;
}

double job_spec::lr_at(std::int64_t step) const {
  const double lr = optimizer.lr;
  const auto& s = schedule;
  if (s.warmup_steps > 0 && step <= s.warmup_steps)
    return lr * static_cast<double>(std::max<std::int64_t>(step, 1)) /
           static_cast<double>(s.warmup_steps);
  const auto t = std::max<std::int64_t>(step - s.warmup_steps - 1, 0);
  if (s.type == "step" && s.step_size > 0)
    return lr * std::pow(s.gamma, static_cast<double>(t / s.step_size));
  if (s.type == "cosine") {
    // t runs 0 .. span - 1 over the steps after the warmup.
    const auto span =
        std::max<std::int64_t>(total_steps() - s.warmup_steps - 1, 1);
    const double f =
        static_cast<double>(std::min(t, span)) / static_cast<double>(span);
    return s.min_lr + (lr - s.min_lr) * 0.5 * (1.0 + std::cos(M_PI * f));
  }
  return lr;
}

double job_spec::lr_at(std::int64_t step,
                       const std::vector<double>& decided) const {
  auto lr = lr_at(step);
  if (steps_per_epoch <= 0 || step <= 0)
    return lr;
  const auto epoch = (step - 1) / steps_per_epoch; // 0-based
  for (std::int64_t e = 1; e < epoch && e <= std::int64_t(decided.size()); ++e)
    lr *= decided[static_cast<std::size_t>(e - 1)];
  return lr;
}

devices::nn::step_context job_spec::step_context(std::int64_t step,
                                                 std::int32_t rank) const {
  const auto epoch = steps_per_epoch > 0 ? step / steps_per_epoch : 0;
  return {devices::nn::noise_key(seed, epoch, step, rank),
          update_rule(*this).stat_share()};
}

std::int64_t job_spec::step_of_version(std::int64_t version) const {
  return update_rule(*this).step_of_version(version);
}

std::int64_t job_spec::versions_per_epoch() const {
  return update_rule(*this).versions_per_epoch();
}

std::int64_t job_spec::shard_begin(std::int64_t s, std::int64_t params) const {
  auto even = [&](std::int64_t i) { return params * i / partitions; };
  if (s <= 0 || s >= partitions)
    return even(s);
  const auto layout = devices::nn::param_layout(model_input(), layers);
  if (devices::nn::param_count(layout) != params)
    return even(s);
  // Every cut at the block start nearest its even share, strictly after the
  // previous cut; where the blocks are too few for that, the even split
  // for all shards alike.
  const auto starts = devices::nn::block_starts(layout);
  std::int64_t previous = 0, cut_s = 0;
  for (std::int64_t i = 1; i < partitions; ++i) {
    std::int64_t best = -1;
    for (auto c : starts)
      if (c > previous &&
          (best < 0 || std::llabs(c - even(i)) < std::llabs(best - even(i))))
        best = c;
    if (best < 0)
      return even(s);
    previous = best;
    if (i == s)
      cut_s = best;
  }
  return cut_s;
}

} // namespace troupe::actors
