// troupe: the command-line interface. Exit codes: 0 success, 1 training
// failed, 2 bad input (pipeline, data, arguments), 3 cluster unreachable.
#include "tools/cli/commands.hpp"

#include <cstdio>

int main(int argc, char** argv) {
  CLI::App app{"troupe: actor-model dataflow runtime for distributed "
               "neural-network training"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "troupe 0.1.0");
  int code = troupe::cli::exit_ok;
  troupe::cli::add_run_command(app, &code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "troupe: %s\nRun with --help for usage.\n", e.what());
    return troupe::cli::exit_bad_input;
  }
  return code;
}
