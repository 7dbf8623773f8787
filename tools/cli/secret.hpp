#pragma once
// The cluster secret on the command line (see runtime/auth.hpp).
#include "runtime/auth.hpp"
#include "runtime/tls.hpp"

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

namespace troupe::cli {

/// Adds --secret-file to a command, stored in *path.
void add_secret_option(CLI::App* cmd, std::string* path);

/// The secret of --secret-file when given, else of TROUPE_SECRET_FILE or
/// TROUPE_SECRET, else unset. Throws runtime::secret_error naming the file.
runtime::cluster_secret cli_secret(const std::string& path);

/// Adds --tls-dir to a command, stored in *dir.
void add_tls_option(CLI::App* cmd, std::string* dir);

/// The TLS settings of --tls-dir when given, else of TROUPE_TLS_DIR, else
/// null (no TLS). Throws runtime::tls_error naming the file and the cause.
std::shared_ptr<const runtime::tls_context> cli_tls(const std::string& dir);

} // namespace troupe::cli
