// troupe run PIPELINE: loads the pipeline (with --set overrides), runs the
// job and reports. Progress goes to stderr; results to stdout.
#include "tools/cli/commands.hpp"
#include "tools/cli/metrics_json.hpp"
#include "tools/cli/secret.hpp"

#include "actors/history.hpp"
#include "actors/model_file.hpp"
#include "actors/run.hpp"
#include "actors/stages.hpp"
#include "data/dataset.hpp"
#include "runtime/auth.hpp"
#include "runtime/cluster.hpp"
#include "runtime/config.hpp"
#include "runtime/node_log.hpp"
#include "tools/cli/dashboard_feed.hpp"
#include "tools/watch/dashboard.hpp"
#include "tools/watch/progress.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::cli {

namespace {

using json = nlohmann::ordered_json;

struct run_options {
  std::string pipeline;
  std::vector<std::string> sets;
  bool json_out = false;
  std::string metrics;
  std::int64_t threads = -1;
  bool quiet = false;
  std::vector<std::string> nodes;
  std::string listen = "127.0.0.1:0";
  std::string secret_file;
  std::string tls_dir;
  double connect_timeout = 10;
  std::string checkpoint_dir;
  bool resume = false;
  std::string save;                 ///< --save: the trained model, as ONNX
  double progress_every = 10;       ///< plain progress lines: seconds apart
  std::string dashboard;            ///< --dashboard HOST:PORT
  std::vector<std::string> plugins; ///< --plugin: libraries of custom stages
};

// What the dashboard of `troupe run` shows, fed by the run's callbacks
// (this thread) and read by the dashboard's (its own).
struct live_job {
  std::mutex lock;
  actors::job_status status;
  actors::history_recorder history;
  bool finished = false;
};

// Ctrl-C or SIGTERM: say so, stop the local node processes, then exit.
extern "C" void on_stop_signal(int sig) {
  // write(2) only: nothing else is safe here.
  static const char interrupted[] =
      "troupe: interrupted (SIGINT): the job stops here\n";
  static const char terminated[] =
      "troupe: terminated (SIGTERM): the job stops here\n";
  const bool i = sig == SIGINT;
  [[maybe_unused]] const auto n =
      write(STDERR_FILENO, i ? interrupted : terminated,
            (i ? sizeof(interrupted) : sizeof(terminated)) - 1);
  runtime::kill_local_nodes_from_signal_handler();
  signal(sig, SIG_DFL);
  raise(sig);
}

std::string self_executable() {
  char buf[4096];
  const auto n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n))
               : std::string("troupe");
}

// A float setting (the learning rate) widened to double shows digits nobody
// wrote (0.0010000000474974513): as the float's own shortest figure.
double float_figure(double v) {
  return std::stod(fmt::format("{}", static_cast<float>(v)));
}

json nullable(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

json to_json(const actors::job_event& e) {
  return json{{"event", e.kind},
              {"step", e.step},
              {"actor", e.actor.empty() ? json(nullptr) : json(e.actor)},
              {"node", e.node.empty() ? json(nullptr) : json(e.node)},
              {"ms", e.ms > 0 ? json(e.ms) : json(nullptr)},
              {"message", e.message}};
}

json to_json(const actors::epoch_summary& e) {
  json out{{"epoch", e.epoch},
           {"steps", e.steps},
           {"train_loss", e.train_loss},
           {"test_loss", e.evaluated ? json(e.test_loss) : json(nullptr)},
           {"test_accuracy", nullable(e.test_accuracy)},
           {"samples_per_s", e.samples_per_s},
           {"lr", float_figure(e.lr)},
           {"wall_s", e.wall_s}};
  if (!e.metrics.custom.empty())
    out["metrics"] = e.metrics.custom; // [[metric]]s, by name
  return out;
}

json to_json(const actors::run_result& r) {
  json placement = json::object();
  for (const auto& [k, v] : r.placement)
    placement[k] = v;
  json history = json::array();
  for (const auto& e : r.history)
    history.push_back(to_json(e));
  json restarts = json::object();
  for (const auto& [role, n] : r.restarts_by_role)
    restarts[role] = n;
  json by_actor = json::object();
  for (const auto& [actor, n] : r.restarts_by_actor)
    by_actor[actor] = n;
  return json{
      {"job", r.job},
      {"mode", r.mode},
      {"nodes", r.nodes},
      {"workers", r.workers},
      {"epochs", r.epochs},
      {"steps", r.steps},
      {"samples", r.samples},
      {"samples_per_s", r.samples_per_s},
      {"train_s", r.train_s},
      {"wall_s", r.wall_s},
      {"test_loss", nullable(r.test_loss)},
      {"test_accuracy", nullable(r.test_accuracy)},
      {"test_metrics", r.test_metrics ? metrics_json(*r.test_metrics, r.labels)
                                      : json(nullptr)},
      {"params_digest", r.params_digest},
      {"param_count", r.param_count},
      {"restarts", r.restarts},
      {"restarts_by_role", restarts},
      {"restarts_by_actor", by_actor},
      {"recovery_ms", r.recovery_ms},
      {"rollbacks", r.rollbacks},
      {"lost_nodes", r.lost_nodes},
      {"fault_detection_ms", r.fault_detection_ms},
      {"best_epoch", r.best_epoch > 0 ? json(r.best_epoch) : json(nullptr)},
      {"stopped_early", r.stopped_early},
      {"resumed_from",
       r.resumed_from < 0 ? json(nullptr) : json(r.resumed_from)},
      {"max_lead", r.max_lead},
      {"gradients_pushed", r.gradients_pushed},
      {"gradients_applied", r.gradients_applied},
      {"duplicates_dropped", r.duplicates_dropped},
      {"worker_compute_s", r.worker_compute_s},
      {"gradient_buffers", r.gradient_buffers},
      {"worker_wait_s", r.worker_wait_s},
      {"coordinator",
       r.coordinator.empty() ? json(nullptr) : json(r.coordinator)},
      {"placement", placement},
      {"worker_devices", r.worker_devices},
      {"history", history}};
}

// Where a controller's checkpoint of epoch e goes: model.onnx ->
// model.epoch-3.onnx, beside it.
std::string epoch_model_path(const std::string& save, std::int64_t e) {
  const std::filesystem::path p(save);
  return (p.parent_path() / fmt::format("{}.epoch-{}{}", p.stem().string(), e,
                                        p.extension().string()))
      .string();
}

std::string epoch_line(const actors::epoch_summary& e, std::int64_t epochs) {
  std::string test = "test_loss -";
  if (e.evaluated) {
    test = fmt::format("test_loss {:.4f}", e.test_loss);
    if (e.test_accuracy)
      test += fmt::format("  test_acc {:.4f}", *e.test_accuracy);
    for (const auto& [name, v] : e.metrics.custom)
      test += fmt::format("  {} {:.4f}", name, v);
  }
  return fmt::format("epoch {}/{}  train_loss {:.4f}  {}  samples/s {:.0f}",
                     e.epoch, epochs, e.train_loss, test, e.samples_per_s);
}

int run(const run_options& o) {
  actors::job_spec spec;
  std::unique_ptr<std::ofstream> metrics;
  json resolved;
  try {
    // Before the pipeline, which may name the types they register; local
    // nodes are started with them too.
    for (const auto& p : o.plugins)
      stages::load_plugin(p);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe: %s\n", e.what());
    return exit_bad_input;
  }
  try {
    auto cfg = runtime::config::load_file(o.pipeline, o.sets);
    spec = actors::parse_job_spec(cfg);
    resolved = json::parse(cfg.resolved_json());
  } catch (const runtime::config_error& e) {
    std::fprintf(stderr, "troupe: %s\n", e.what());
    return exit_bad_input;
  }
  if (o.threads >= 0)
    spec.threads = o.threads;
  if (!o.save.empty()) {
    // Found out now, not after the training: a model that cannot be
    // written there, or cannot be written as ONNX.
    const auto dir = std::filesystem::path(o.save).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
      std::fprintf(stderr, "troupe: --save %s: no directory %s\n",
                   o.save.c_str(), dir.c_str());
      return exit_bad_input;
    }
    try {
      actors::check_savable(spec);
    } catch (const modelio::model_error& e) {
      std::fprintf(stderr, "troupe: --save %s: %s\n", o.save.c_str(), e.what());
      return exit_bad_input;
    }
  }
  if (!o.metrics.empty()) {
    // Appending: a metrics file from an earlier run is never clobbered.
    metrics = std::make_unique<std::ofstream>(o.metrics, std::ios::app);
    if (!*metrics) {
      std::fprintf(stderr,
                   "troupe: --metrics %s: cannot open for writing: %s\n",
                   o.metrics.c_str(), std::strerror(errno));
      return exit_bad_input;
    }
  }
  const bool tty = isatty(STDERR_FILENO) != 0;
  // Progress: a bar on a terminal, else a plain line every few seconds.
  const bool show_bar = tty && !o.quiet;
  const bool show_plain = !tty && !o.quiet && o.progress_every > 0;
  std::FILE* results = o.json_out ? stderr : stdout;
  const auto t0 = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
        .count();
  };
  // What a dashboard shows, from the run's callbacks.
  auto live = std::make_shared<live_job>();
  live->status.job = spec.name;
  live->status.mode = spec.mode;
  live->status.state = "starting";
  live->status.epochs = spec.epochs;
  live->status.batch = spec.batch;
  // Every line has its event and t, seconds since the start line (one
  // clock for the whole file).
  auto log_metric = [&](json j) {
    if (!metrics)
      return;
    const bool first = j["event"] == "start";
    json line{{"event", j["event"]},
              {"t", first ? 0.0 : std::round(since() * 1e6) / 1e6}};
    for (auto& [k, v] : j.items())
      if (k != "event")
        line[k] = std::move(v);
    *metrics << line.dump() << '\n';
    metrics->flush();
  };
  log_metric({{"event", "start"},
              {"time", runtime::utc_timestamp()},
              {"job", spec.name},
              {"pipeline", o.pipeline},
              {"sets", o.sets},
              {"config", resolved}});
  bool bar_shown = false;
  auto clear_bar = [&] {
    if (bar_shown) {
      std::fprintf(stderr, "\r\033[K");
      bar_shown = false;
    }
  };
  double last_metric = -1;
  double last_plain = 0;
  watch::progress_meter meter(spec.epochs, spec.batch);
  actors::run_observer obs;
  obs.on_info = [&](const std::string& s) {
    if (o.quiet)
      return;
    clear_bar();
    std::fprintf(stderr, "troupe: %s\n", s.c_str());
  };
  obs.on_event = [&](const actors::job_event& e) {
    obs.on_info(e.message);
    log_metric(to_json(e));
    auto seen = e;
    seen.t = since(); // the dashboard's clock is this process's
    std::lock_guard<std::mutex> guard(live->lock);
    live->history.event(seen);
  };
  obs.on_status = [&](const actors::job_status& s) {
    std::lock_guard<std::mutex> guard(live->lock);
    live->status = s;
  };
  obs.on_progress = [&](std::int64_t done, std::int64_t total, double loss,
                        double lr) {
    const double now = since();
    if (done <= 0)
      return; // no step trained yet: no loss to show
    const auto f = meter.update(done, total, loss, now);
    {
      std::lock_guard<std::mutex> guard(live->lock);
      live->status.step = done;
      live->status.steps = total;
      live->status.loss = loss;
      live->history.progress({done, now, loss, float_figure(lr)});
    }
    if (now - last_metric >= 1.0 || done == total) {
      last_metric = now;
      // The learning rate of the step reported (schedule and controller).
      log_metric({{"event", "progress"},
                  {"epoch", f.epoch},
                  {"step", done},
                  {"steps", total},
                  {"loss", loss},
                  {"lr", float_figure(lr)},
                  {"samples_per_s", f.samples_per_s > 0 ? json(f.samples_per_s)
                                                        : json(nullptr)}});
    }
    if (show_plain && (now - last_plain >= o.progress_every || done == total)) {
      last_plain = now;
      std::fprintf(stderr, "troupe: %s\n", watch::plain_line(f).c_str());
      std::fflush(stderr);
    }
    if (!show_bar)
      return;
    std::fprintf(
        stderr, "\r%s\033[K",
        watch::bar_line(f, watch::terminal_columns(STDERR_FILENO)).c_str());
    std::fflush(stderr);
    bar_shown = true;
  };
  obs.on_epoch = [&](const actors::epoch_summary& e) {
    clear_bar();
    // With --json the epoch lines are progress (stderr), which -q silences.
    if (!(o.json_out && o.quiet)) {
      std::fprintf(results, "%s\n", epoch_line(e, spec.epochs).c_str());
      std::fflush(results);
    }
    {
      std::lock_guard<std::mutex> guard(live->lock);
      live->history.epoch(actors::point_of(e, since()));
    }
    auto j = to_json(e);
    j["event"] = "epoch";
    j["train_s"] = j["wall_s"]; // since training started; t is the time base
    j.erase("wall_s");
    log_metric(j);
  };
  actors::cluster_options copt;
  copt.nodes = o.nodes;
  copt.executable = self_executable();
  copt.connect_timeout_s = o.connect_timeout;
  copt.checkpoint_dir = o.checkpoint_dir;
  copt.resume = o.resume;
  try {
    auto [host, port] = runtime::parse_address(o.listen);
    copt.coordinator_host = host;
    copt.coordinator_port = port;
    for (const auto& n : o.nodes)
      runtime::parse_address(n);
    copt.secret = cli_secret(o.secret_file);
    copt.tls = cli_tls(o.tls_dir);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "troupe: %s\n", e.what());
    return exit_bad_input;
  } catch (const runtime::tls_error& e) {
    std::fprintf(stderr, "troupe: %s\n", e.what());
    return exit_bad_input;
  } catch (const runtime::secret_error& e) {
    std::fprintf(stderr, "troupe: %s\n", e.what());
    return exit_bad_input;
  }
  // The dashboard listens from now until the end of the run.
  std::unique_ptr<watch::dashboard_server> dashboard;
  if (!o.dashboard.empty()) {
    try {
      auto [host, port] = runtime::parse_address(o.dashboard);
      const auto& key = copt.secret.key;
      dashboard = std::make_unique<watch::dashboard_server>(
          host, port,
          watch::dashboard_token(
              copt.secret.set ? std::string(key.begin(), key.end()) : ""),
          [live, since] {
            std::lock_guard<std::mutex> guard(live->lock);
            auto s = live->status;
            if (live->finished)
              s.state = "finished";
            return watch::to_json(
                record_of(s, live->history.snapshot(since())));
          });
      std::fprintf(stderr, "troupe: dashboard at %s%s\n",
                   dashboard->url().c_str(),
                   runtime::is_loopback_host(host)
                       ? ""
                       : " (reachable from other machines, by its token)");
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "troupe: --dashboard: %s\n", e.what());
      return exit_bad_input;
    } catch (const watch::dashboard_error& e) {
      std::fprintf(stderr, "troupe: %s\n", e.what());
      return exit_bad_input;
    }
  }
  signal(SIGINT, on_stop_signal);
  signal(SIGTERM, on_stop_signal);
  bool save_failed = false;
  // A controller's checkpoints: epoch E's model beside --save's file.
  bool told_no_save = false;
  obs.on_checkpoint = [&](const actors::epoch_checkpoint& c) {
    clear_bar();
    if (o.save.empty()) {
      if (!told_no_save)
        obs.on_info(fmt::format("the controller asked to keep epoch {}'s "
                                "model: give --save FILE.onnx to write it "
                                "(to FILE.epoch-{}.onnx)",
                                c.epoch, c.epoch));
      told_no_save = true;
      return;
    }
    const auto path = epoch_model_path(o.save, c.epoch);
    try {
      modelio::save_onnx(actors::trained_model_of(spec, c.model), path);
      obs.on_info(fmt::format("model saved: {} (ONNX, epoch {}, asked by "
                              "the controller{}{})",
                              path, c.epoch, c.reason.empty() ? "" : ": ",
                              c.reason));
      log_metric(json{{"event", "model_saved"},
                      {"epoch", c.epoch},
                      {"path", path},
                      {"params_digest", c.model.params_digest}});
    } catch (const modelio::model_error& e) {
      // Training goes on; the run exits 2 at its end.
      std::fprintf(stderr, "troupe: --save: %s\n", e.what());
      save_failed = true;
    }
  };
  try {
    auto result = actors::run_job(spec, obs, copt);
    {
      std::lock_guard<std::mutex> guard(live->lock);
      live->finished = true;
    }
    clear_bar();
    if (!o.save.empty()) {
      try {
        modelio::save_onnx(actors::trained_model_of(spec, result), o.save);
        obs.on_info(fmt::format("model saved: {} (ONNX, epoch {})", o.save,
                                result.best_epoch > 0 ? result.best_epoch
                                                      : result.epochs));
      } catch (const modelio::model_error& e) {
        // The run itself is done: its result still goes out, then exit 2.
        std::fprintf(stderr, "troupe: --save: %s\n", e.what());
        save_failed = true;
      }
    }
    auto j = to_json(result);
    auto end = j;
    end["event"] = "end";
    log_metric(end);
    if (o.json_out) {
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf(
          "done: %lld steps in %.2f s (%.0f samples/s), %s%sparams_digest %s\n",
          static_cast<long long>(result.steps), result.train_s,
          result.samples_per_s,
          result.test_loss
              ? fmt::format("test_loss {:.4f}, ", *result.test_loss).c_str()
              : "",
          result.test_accuracy
              ? fmt::format("test_acc {:.4f}, ", *result.test_accuracy).c_str()
              : "",
          result.params_digest.c_str());
    }
    return save_failed ? exit_bad_input : exit_ok;
  } catch (const std::exception& e) {
    // One message, one metrics line, and the exit code of the failure kind.
    std::string prefix = "training failed: ";
    int code = exit_training_failed;
    if (dynamic_cast<const runtime::config_error*>(&e)) {
      prefix = o.pipeline + ": ";
      code = exit_bad_input;
    } else if (dynamic_cast<const data::data_error*>(&e)) {
      prefix.clear();
      code = exit_bad_input;
    } else if (dynamic_cast<const actors::cluster_unreachable*>(&e)) {
      prefix = "cluster unreachable: ";
      code = exit_unreachable;
    }
    clear_bar();
    std::fprintf(stderr, "troupe: %s%s\n", prefix.c_str(), e.what());
    log_metric({{"event", "error"}, {"message", e.what()}});
    return code;
  }
}

} // namespace

void add_run_command(CLI::App& app, int* code) {
  auto opts = std::make_shared<run_options>();
  auto* cmd =
      app.add_subcommand("run", "Train the pipeline in PIPELINE (a TOML file)");
  cmd->add_option("pipeline", opts->pipeline, "Pipeline file (TOML)")
      ->required();
  cmd->add_option("--set", opts->sets,
                  "Override a pipeline key: KEY=VALUE, VALUE parsed as TOML "
                  "(e.g. --set optimizer.lr=0.01); repeatable");
  cmd->add_flag("--json", opts->json_out,
                "Print one JSON object with the result on stdout");
  cmd->add_option("--metrics", opts->metrics,
                  "Append JSON lines (progress, epochs, result) to this file");
  cmd->add_option(
         "--threads", opts->threads,
         "Scheduler threads (default: cluster.threads, 0 = one per core)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("-q,--quiet", opts->quiet, "No progress on stderr");
  cmd->add_option("--progress-every", opts->progress_every,
                  "When stderr is not a terminal: a plain progress line every "
                  "S seconds (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option(
         "--nodes", opts->nodes,
         "Nodes to run on: HOST:PORT of `troupe node`s, comma-separated "
         "(default: start cluster.local_nodes nodes on 127.0.0.1)")
      ->delimiter(',');
  cmd->add_option("--listen", opts->listen,
                  "HOST:PORT where the coordinator answers `troupe status` "
                  "(multi-node runs; port 0: the OS picks)")
      ->capture_default_str();
  add_secret_option(cmd, &opts->secret_file);
  add_tls_option(cmd, &opts->tls_dir);
  cmd->add_option("--connect-timeout", opts->connect_timeout,
                  "Seconds to wait for each node (start-up, connect, spawn)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--checkpoint-dir", opts->checkpoint_dir,
                  "Keep whole-job checkpoints (every supervision."
                  "snapshot_every steps) in DIR after the job");
  cmd->add_flag("--resume", opts->resume,
                "Continue from the newest good checkpoint in "
                "--checkpoint-dir (from step 0 when there is none)");
  cmd->add_option("--dashboard", opts->dashboard,
                  "Serve a live dashboard at HOST:PORT (e.g. 127.0.0.1:8080; "
                  "port 0: the OS picks); its URL, with the token it needs, "
                  "is printed on stderr");
  cmd->add_option("--plugin", opts->plugins,
                  "A shared library of custom stages ([[stage]], "
                  "[controller]) to load here and in local nodes "
                  "(repeatable); nodes given with --nodes load it themselves "
                  "(troupe node --plugin)")
      ->allow_extra_args(false);
  cmd->add_option("--save", opts->save,
                  "Write the trained model to FILE as ONNX (opset 17; see "
                  "docs/models.md); epochs a controller asks to keep go to "
                  "FILE.epoch-E.onnx");
  cmd->callback([opts, code] { *code = run(*opts); });
}

} // namespace troupe::cli
