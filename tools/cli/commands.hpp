#pragma once
// Subcommands of the troupe CLI. Each adds itself to the app and returns
// the exit code it wants through the shared int.
#include <CLI/CLI.hpp>

namespace troupe::cli {

/// Exit codes shared by every command (see docs/cli.md).
enum exit_code : int {
  exit_ok = 0,
  exit_training_failed = 1,
  exit_bad_input = 2,
  exit_unreachable = 3,
};

/// `troupe run PIPELINE ...`; sets *code when it runs.
void add_run_command(CLI::App& app, int* code);
/// `troupe node ...`
void add_node_command(CLI::App& app, int* code);
/// `troupe status --coordinator HOST:PORT`
void add_status_command(CLI::App& app, int* code);
/// `troupe kill --coordinator HOST:PORT ROLE:INDEX`
void add_kill_command(CLI::App& app, int* code);
/// `troupe bench allreduce ...`
void add_bench_command(CLI::App& app, int* code);
/// `troupe eval`, `troupe predict` and `troupe inspect`
void add_model_commands(CLI::App& app, int* code);
/// `troupe secret`
void add_secret_command(CLI::App& app, int* code);
/// `troupe cert ca|issue`
void add_cert_command(CLI::App& app, int* code);
/// `troupe plot METRICS... -o FILE`
void add_plot_command(CLI::App& app, int* code);
/// `troupe devices [--json]`
void add_devices_command(CLI::App& app, int* code);

} // namespace troupe::cli
