#include "runtime/node_log.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace troupe::runtime {

namespace {

std::mutex log_lock;
std::FILE* log_file = nullptr;
std::string log_node;

void put_json_string(std::string& out, std::string_view s) {
  if (s.empty()) {
    out += "null";
    return;
  }
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20)
          out += fmt::format("\\u{:04x}", u);
        else
          out += c;
    }
  }
  out += '"';
}

} // namespace

std::string utc_timestamp() {
  const auto now = std::chrono::system_clock::now();
  const auto t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      now.time_since_epoch())
                      .count() %
                  1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03}Z", buf, ms);
}

std::string open_node_log(const std::string& path, std::string node) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr)
    return fmt::format("--log-file {}: cannot open for appending: {}", path,
                       std::strerror(errno));
  std::lock_guard<std::mutex> guard(log_lock);
  if (log_file != nullptr)
    std::fclose(log_file);
  log_file = f;
  log_node = std::move(node);
  return "";
}

void set_node_log_name(std::string node) {
  std::lock_guard<std::mutex> guard(log_lock);
  log_node = std::move(node);
}

void node_log(std::string_view event, std::string_view job,
              std::string_view actor, std::string_view detail) {
  std::lock_guard<std::mutex> guard(log_lock);
  if (log_file == nullptr)
    return;
  std::string line = "{\"time\":\"" + utc_timestamp() + "\",\"node\":";
  put_json_string(line, log_node);
  line += ",\"job\":";
  put_json_string(line, job);
  line += ",\"actor\":";
  put_json_string(line, actor);
  line += ",\"event\":";
  put_json_string(line, event);
  line += ",\"detail\":";
  put_json_string(line, detail);
  line += "}\n";
  std::fwrite(line.data(), 1, line.size(), log_file);
  std::fflush(log_file);
}

void close_node_log() {
  std::lock_guard<std::mutex> guard(log_lock);
  if (log_file != nullptr)
    std::fclose(log_file);
  log_file = nullptr;
}

} // namespace troupe::runtime
