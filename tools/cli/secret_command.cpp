// troupe secret: a new cluster secret on stdout; and the --secret-file
// option that node, run, status and kill share.
#include "tools/cli/commands.hpp"
#include "tools/cli/secret.hpp"

#include <cstdio>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

namespace troupe::cli {

void add_secret_option(CLI::App* cmd, std::string* path) {
  cmd->add_option("--secret-file", *path,
                  "Cluster secret every connection must prove (`troupe "
                  "secret > FILE`; default: $TROUPE_SECRET_FILE)");
}

runtime::cluster_secret cli_secret(const std::string& path) {
  if (!path.empty())
    return runtime::load_secret_file(path);
  return runtime::secret_from_environment();
}

void add_secret_command(CLI::App& app, int* code) {
  auto* cmd = app.add_subcommand(
      "secret", "Print a new cluster secret (64 hex digits). `troupe secret "
                "> FILE` leaves FILE readable by you alone; give it to every "
                "node, run, status and kill with --secret-file FILE");
  cmd->callback([code] {
    try {
      const auto hex = runtime::secret_to_hex(runtime::make_secret());
      // Redirected to a file: make it private before the secret is in it.
      struct stat st {};
      if (::fstat(STDOUT_FILENO, &st) == 0 && S_ISREG(st.st_mode) &&
          ::fchmod(STDOUT_FILENO, 0600) != 0) {
        std::fprintf(stderr, "troupe secret: cannot make the output file "
                             "private (chmod 600); nothing written\n");
        *code = exit_bad_input;
        return;
      }
      std::printf("%s\n", hex.c_str());
      *code = exit_ok;
    } catch (const runtime::secret_error& e) {
      std::fprintf(stderr, "troupe secret: %s\n", e.what());
      *code = exit_training_failed;
    }
  });
}

} // namespace troupe::cli
