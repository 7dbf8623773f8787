// troupe: the command-line interface. Exit codes: 0 success, 1 training
// failed, 2 bad input (pipeline, data, arguments), 3 cluster unreachable.
#include "tools/cli/commands.hpp"

#include <csignal>
#include <cstdio>
#include <malloc.h>
#include <string>

int main(int argc, char** argv) {
  // Gradients and parameter versions are large, short-lived buffers: keep
  // them in the heap instead of fresh mmaps, which page-fault on every use.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  // One arena: a buffer freed on another thread than the one that made it
  // (a data-plane reader's tensor, freed by an actor) goes back to the heap
  // it came from. With per-thread arenas, a sub-heap emptied this way is
  // unmapped, and the next buffer faults its pages in afresh (measured:
  // troupe bench allreduce --nodes 2 at 16 MiB, 13.2-15.0 ms per op with
  // per-thread arenas, 9.6-12.1 ms with one).
  mallopt(M_ARENA_MAX, 1);
  // A file-size limit (ulimit -f) fails the write that passes it, with a
  // message, instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"troupe: actor-model dataflow runtime for distributed "
               "neural-network training"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "troupe 0.1.0");
  int code = troupe::cli::exit_ok;
  troupe::cli::add_run_command(app, &code);
  troupe::cli::add_node_command(app, &code);
  troupe::cli::add_status_command(app, &code);
  troupe::cli::add_kill_command(app, &code);
  troupe::cli::add_bench_command(app, &code);
  troupe::cli::add_devices_command(app, &code);
  troupe::cli::add_secret_command(app, &code);
  troupe::cli::add_cert_command(app, &code);
  troupe::cli::add_model_commands(app, &code);
  troupe::cli::add_plot_command(app, &code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (argc > 1 && argv[1][0] != '-' && app.get_subcommands().empty()) {
      std::string known;
      for (const auto* sub : app.get_subcommands({}))
        known += (known.empty() ? "" : ", ") + sub->get_name();
      std::fprintf(stderr, "troupe: unknown command '%s' (commands: %s)\n",
                   argv[1], known.c_str());
      return troupe::cli::exit_bad_input;
    }
    std::fprintf(stderr, "troupe: %s\nRun with --help for usage.\n", e.what());
    return troupe::cli::exit_bad_input;
  }
  return code;
}
