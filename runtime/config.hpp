#pragma once
/// \file Pipeline files: TOML with --set overrides, typed access whose errors
/// name file:line:column and the key, and detection of unknown keys.
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace toml {
inline namespace v3 {
class table;
class node;
} // namespace v3
} // namespace toml

namespace troupe::runtime {

/// Bad pipeline input; what() is the complete message for the user.
class config_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A parsed pipeline document. Keys are dotted paths, array elements are
/// addressed as "model.layers[1].units". Every read marks the key as known;
/// check_unknown() then reports whatever the file has that nobody read.
class config {
public:
  /// Parses a file, then applies each "key=value" override (value parsed as a
  /// TOML value; a bare word is taken as a string). Throws config_error.
  static config load_file(const std::string& path,
                          const std::vector<std::string>& overrides = {});
  /// Same from text; source_name stands in for the file name in messages.
  static config parse(std::string_view text, const std::string& source_name,
                      const std::vector<std::string>& overrides = {});

  config(config&&) noexcept;
  config& operator=(config&&) noexcept;
  ~config();

  bool has(std::string_view key) const;
  std::string get_string(std::string_view key, std::string fallback,
                         const std::vector<std::string>& allowed = {});
  std::int64_t get_int(std::string_view key, std::int64_t fallback,
                       std::int64_t min, std::int64_t max);
  /// Accepts integers too. min_exclusive: value must be > min, not >= min.
  double get_float(std::string_view key, double fallback, double min,
                   double max, bool min_exclusive = false);
  bool get_bool(std::string_view key, bool fallback);
  /// A string or an array of strings.
  std::vector<std::string> get_strings(std::string_view key);
  /// get_strings for file paths: a relative path written in a pipeline
  /// file is taken relative to that file's folder (not the shell's); one
  /// given with --set, or in text parsed without a file, as it is.
  std::vector<std::string> get_paths(std::string_view key);
  /// A string, number or boolean as text ("4", "0.5", "true", "abc"): the
  /// settings of a custom stage, which the stage itself checks. Missing:
  /// an error.
  std::string get_scalar_text(std::string_view key);
  /// A string, or an integer given as its decimal text (e.g. a column).
  std::string get_name_or_index(std::string_view key);
  /// Elements in an array (of tables, usually); 0 when absent.
  std::size_t array_size(std::string_view key);
  /// Member names of a table (empty when absent); throws if not a table.
  std::vector<std::string> keys(std::string_view key);
  /// Marks a table or array as known without reading its members.
  void touch(std::string_view key);

  /// "file:line:column" of a key's value, or "--set key=value" if overridden.
  std::string where(std::string_view key) const;
  /// Throws config_error "WHERE: KEY: message".
  [[noreturn]] void fail(std::string_view key, std::string_view message) const;
  /// "unknown key", with the closest key its table takes and all of them.
  std::string unknown_key(const std::string& path) const;
  /// Throws for the first key present that was never read.
  void check_unknown() const;

  /// The whole document (with overrides) as TOML text.
  std::string to_toml() const;
  /// Every key read so far with the value it had: as written (after the
  /// overrides), or the default its reader fell back on; relative paths
  /// resolved. After parse_job_spec, the pipeline as the job runs it. JSON
  /// text, one object.
  std::string resolved_json() const;
  const std::string& source() const { return source_; }

private:
  config();
  const toml::node* find(std::string_view key) const;
  void apply_override(const std::string& assignment);
  template <class Value>
  void record(std::string_view key, Value value);

  std::unique_ptr<toml::table> root_;
  std::string source_;
  std::string base_dir_; // the pipeline file's folder ("" : none)
  std::vector<std::pair<std::string, std::string>> overridden_;
  std::set<std::string, std::less<>> known_;
  std::unique_ptr<toml::table> resolved_; // what record() saw
};

} // namespace troupe::runtime
