#include "tools/watch/metrics.hpp"

#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace troupe::watch {

namespace {

using json = nlohmann::json;

// A number field, or false when absent or null.
bool number(const json& j, const char* key, double& out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number())
    return false;
  out = it->get<double>();
  return true;
}

std::string file_name(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace

std::vector<run_series> read_metrics(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw metrics_error(
        fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  std::vector<run_series> runs;
  // Steps of the run so far: epoch lines have their own, events too.
  auto current = [&]() -> run_series& {
    if (runs.empty())
      runs.emplace_back().label = file_name(path);
    return runs.back();
  };
  std::size_t pos = 0;
  std::size_t line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    const auto end = text.find('\n', pos);
    const bool complete = end != std::string::npos;
    const std::string line =
        text.substr(pos, complete ? end - pos : std::string::npos);
    pos = complete ? end + 1 : text.size();
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      if (!complete)
        break; // cut short by a run that stopped while writing it
      throw metrics_error(fmt::format(
          "{}:{}: not a JSON line ({}); is it a troupe --metrics file?", path,
          line_no, e.what()));
    }
    if (!j.is_object())
      throw metrics_error(fmt::format("{}:{}: expected a JSON object, got {}",
                                      path, line_no, j.type_name()));
    const auto kind = j.value("event", std::string());
    double t = 0;
    number(j, "t", t);
    if (kind == "start") {
      auto& r = runs.emplace_back();
      r.label = fmt::format("{} ({})", j.value("job", std::string("job")),
                            file_name(path));
      continue;
    }
    auto& r = current();
    double step = 0, v = 0;
    if (kind == "progress") {
      if (!number(j, "step", step))
        continue;
      if (number(j, "loss", v))
        r.loss.push_back({step, t, v});
      if (number(j, "samples_per_s", v))
        r.samples_per_s.push_back({step, t, v});
      if (number(j, "lr", v))
        r.lr.push_back({step, t, v});
    } else if (kind == "epoch") {
      if (!number(j, "steps", step))
        continue;
      if (number(j, "test_loss", v))
        r.test_loss.push_back({step, t, v});
      if (number(j, "test_accuracy", v))
        r.test_accuracy.push_back({step, t, v});
    } else if (kind == "end") {
      r.finished = true;
    } else if (kind == "fault" || kind == "failed" || kind == "node_lost" ||
               kind == "rollback" || kind == "resumed" || kind == "recovered" ||
               kind == "early_stop" || kind == "controller") {
      number(j, "step", step);
      r.events.push_back({step, t, kind, j.value("message", std::string())});
    }
  }
  return runs;
}

} // namespace troupe::watch
