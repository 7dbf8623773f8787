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

/// Runs the program at `path` with args, at most `seconds` long.
inline outcome run_program_at(const std::string& path,
                              const std::vector<std::string>& args,
                              int seconds = 120) {
  data::testing::temp_dir dir;
  std::string cmd = fmt::format("timeout -k 5 {} {}", seconds, quote(path));
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

/// Runs `program args...` from the build tree, at most `seconds` long.
inline outcome run_program(const std::string& program,
                           const std::vector<std::string>& args,
                           int seconds = 120) {
  return run_program_at(fmt::format("{}/bin/{}", TROUPE_BINARY_DIR, program),
                        args, seconds);
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

#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace troupe::testing {

/// A program of the build running in the background; killed on destruction.
class background {
public:
  background(const std::string& program, const std::vector<std::string>& args) {
    int out[2];
    if (pipe(out) != 0)
      throw std::runtime_error("pipe");
    err_path_ = dir_.file("stderr");
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(out[1], STDOUT_FILENO);
      int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(err, STDERR_FILENO);
      close(out[0]);
      std::vector<std::string> all{std::string(TROUPE_BINARY_DIR) + "/bin/" +
                                   program};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    out_ = out[0];
  }
  ~background() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_);
  }
  pid_t pid() const { return pid_; }
  /// One line of stdout, or "" when none came within the time.
  std::string read_line(int timeout_ms = 20000) {
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0)
        return {};
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0)
        continue;
      char c = 0;
      if (read(out_, &c, 1) <= 0)
        return line;
      if (c == '\n')
        return line;
      line += c;
    }
  }
  /// Everything left on stdout (until the program closes it).
  std::string read_rest(int timeout_ms = 120000) {
    std::string all;
    for (;;) {
      auto l = read_line(timeout_ms);
      if (l.empty())
        return all;
      all += l + "\n";
    }
  }
  std::string err() const { return slurp(err_path_); }
  /// Sends sig and waits; returns the exit status (or 128 + signal), -1 on
  /// timeout.
  int stop(int sig, int timeout_ms = 10000) {
    kill(pid_, sig);
    return wait(timeout_ms);
  }
  int wait(int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

private:
  data::testing::temp_dir dir_;
  std::string err_path_;
  pid_t pid_ = -1;
  int out_ = -1;
};

} // namespace troupe::testing
