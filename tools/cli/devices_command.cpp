// troupe devices: the backends this build has and the devices this machine
// offers (what `troupe node --devices auto` advertises).
#include "tools/cli/commands.hpp"

#include "devices/backends.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>

#include <fmt/format.h>

namespace troupe::cli {

namespace {

int run(bool json) {
  std::string note;
  const auto found = devices::detect_devices(&note);
  const auto backends = devices::compiled_backends();
  if (json) {
    nlohmann::ordered_json j;
    j["backends"] = backends;
    j["devices"] = nlohmann::json::array();
    for (const auto& d : found) {
      nlohmann::ordered_json e{
          {"id", d.id}, {"kind", devices::to_string(d.kind)}, {"name", d.name}};
      if (d.kind == devices::device_kind::cuda) {
        e["memory_bytes"] = d.memory_bytes;
        e["compute_capability"] = d.compute_capability;
      }
      j["devices"].push_back(e);
    }
    if (!note.empty())
      j["cuda_note"] = note;
    std::printf("%s\n", j.dump().c_str());
    return exit_ok;
  }
  std::printf("backends: %s\n",
              fmt::format("{}", fmt::join(backends, ", ")).c_str());
  for (const auto& d : found) {
    if (d.kind == devices::device_kind::cuda)
      std::printf("%-8s %s, %.1f GiB, compute capability %s\n", d.id.c_str(),
                  d.name.c_str(),
                  static_cast<double>(d.memory_bytes) / (1 << 30),
                  d.compute_capability.c_str());
    else
      std::printf("%-8s %s\n", d.id.c_str(), d.name.c_str());
  }
  if (!note.empty())
    std::printf("cuda: %s\n", note.c_str());
  return exit_ok;
}

} // namespace

void add_devices_command(CLI::App& app, int* code) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand(
      "devices", "Backends compiled in and devices found on this machine");
  cmd->add_flag("--json", *json,
                "One JSON object: backends, devices (and cuda_note when no GPU "
                "is usable)");
  cmd->callback([json, code] { *code = run(*json); });
}

} // namespace troupe::cli
