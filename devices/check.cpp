#include "devices/check.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace troupe {

namespace {
std::atomic<bool> throws_{false};
} // namespace

void set_internal_error_throws(bool throws) {
  throws_ = throws;
}

void on_internal_error(std::string_view what, const char* file, int line) {
  std::string msg = "troupe internal error: " + std::string(what) + " (" +
                    file + ":" + std::to_string(line) + ")";
  if (throws_)
    throw std::logic_error(msg);
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::abort();
}

} // namespace troupe
