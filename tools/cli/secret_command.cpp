// troupe secret: a new cluster secret on stdout; and the --secret-file
// option that node, run, status and kill share.
#include "tools/cli/commands.hpp"
#include "tools/cli/secret.hpp"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

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

void add_tls_option(CLI::App* cmd, std::string* dir) {
  cmd->add_option("--tls-dir", *dir,
                  "Mutual TLS on every connection: DIR holds ca.pem, cert.pem "
                  "and key.pem (`troupe cert`; default: $TROUPE_TLS_DIR)");
}

std::shared_ptr<const runtime::tls_context> cli_tls(const std::string& dir) {
  if (!dir.empty())
    return runtime::tls_context::load(dir);
  if (const char* env = std::getenv("TROUPE_TLS_DIR"); env && *env)
    return runtime::tls_context::load(env);
  return nullptr;
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

void add_cert_command(CLI::App& app, int* code) {
  auto* cmd = app.add_subcommand(
      "cert",
      "Make the certificates of mutual TLS (--tls-dir): a cluster CA, then a "
      "certificate for each node and client signed by it");
  cmd->require_subcommand(1);
  struct ca_cli {
    std::string dir;
    std::string name = "troupe-ca";
    int days = 3650;
  };
  auto ca = std::make_shared<ca_cli>();
  auto* ca_cmd = cmd->add_subcommand(
      "ca", "Make a CA in DIR: ca.pem (the certificate every member trusts) "
            "and ca.key (0600; keep it off the nodes)");
  ca_cmd->add_option("dir", ca->dir, "Directory (made 0700 if missing)")
      ->required();
  ca_cmd->add_option("--name", ca->name, "The CA's common name")
      ->capture_default_str();
  ca_cmd->add_option("--days", ca->days, "Validity in days")
      ->capture_default_str();
  ca_cmd->callback([ca, code] {
    try {
      runtime::make_ca(ca->dir, ca->name, ca->days);
      std::printf("%s/ca.pem\n%s/ca.key\n", ca->dir.c_str(), ca->dir.c_str());
      *code = exit_ok;
    } catch (const runtime::tls_error& e) {
      std::fprintf(stderr, "troupe cert ca: %s\n", e.what());
      *code = exit_bad_input;
    }
  });
  struct issue_cli {
    std::string dir;
    std::string ca_dir;
    std::string name;
    std::vector<std::string> hosts;
    int days = 365;
  };
  auto is = std::make_shared<issue_cli>();
  auto* is_cmd = cmd->add_subcommand(
      "issue", "Issue a member certificate into DIR: ca.pem, cert.pem and "
               "key.pem (0600), the --tls-dir of a node, a driver, or "
               "`troupe status`/`kill`");
  is_cmd->add_option("dir", is->dir, "Directory (made 0700 if missing)")
      ->required();
  is_cmd->add_option("--ca", is->ca_dir, "The CA's directory (`cert ca`)")
      ->required();
  is_cmd->add_option("--name", is->name, "The member's common name")
      ->required();
  is_cmd->add_option("--host", is->hosts,
                     "A DNS name or IP address of the member, for tools that "
                     "check names (repeatable); troupe itself trusts any "
                     "certificate of the CA");
  is_cmd->add_option("--days", is->days, "Validity in days")
      ->capture_default_str();
  is_cmd->callback([is, code] {
    try {
      runtime::issue_cert(is->ca_dir, is->dir, is->name, is->hosts, is->days);
      const auto p = runtime::tls_paths_in(is->dir);
      std::printf("%s\n%s\n%s\n", p.ca.c_str(), p.cert.c_str(), p.key.c_str());
      *code = exit_ok;
    } catch (const runtime::tls_error& e) {
      std::fprintf(stderr, "troupe cert issue: %s\n", e.what());
      *code = exit_bad_input;
    }
  });
}

} // namespace troupe::cli
