#pragma once
// Runs troupe (or another program of the build) with a time limit and
// captures what it printed.
#include "data/test_files.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>

#include <fmt/format.h>

namespace troupe::testing {

struct outcome {
  int code = -1; ///< exit status; 124 = killed by the time limit
  std::string out;
  std::string err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s)
    out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

/// Runs `program args...` from the build tree, at most `seconds` long.
inline outcome run_program(const std::string& program,
                           const std::vector<std::string>& args,
                           int seconds = 120) {
  data::testing::temp_dir dir;
  std::string cmd = fmt::format("timeout -k 5 {} {}/bin/{}", seconds,
                                TROUPE_BINARY_DIR, program);
  for (const auto& a : args)
    cmd += " " + quote(a);
  cmd += fmt::format(" >{} 2>{} </dev/null", dir.file("out"), dir.file("err"));
  const int status = std::system(cmd.c_str());
  outcome o;
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = slurp(dir.file("out"));
  o.err = slurp(dir.file("err"));
  return o;
}

inline outcome run_troupe(const std::vector<std::string>& args,
                          int seconds = 120) {
  return run_program("troupe", args, seconds);
}

inline const std::string fashion = "/usr/share/datasets/fashion-mnist/";

inline std::string example(const std::string& name) {
  return std::string(TROUPE_SOURCE_DIR) + "/examples/" + name;
}

} // namespace troupe::testing
