#pragma once
// The cluster secret on the command line (see runtime/auth.hpp).
#include "runtime/auth.hpp"

#include <CLI/CLI.hpp>

#include <string>

namespace troupe::cli {

/// Adds --secret-file to a command, stored in *path.
void add_secret_option(CLI::App* cmd, std::string* path);

/// The secret of --secret-file when given, else of TROUPE_SECRET_FILE or
/// TROUPE_SECRET, else unset. Throws runtime::secret_error naming the file.
runtime::cluster_secret cli_secret(const std::string& path);

} // namespace troupe::cli
