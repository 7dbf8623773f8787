#pragma once
/// \file The one door for broken invariants in troupe.
#include <string_view>

namespace troupe {

/// Reports a broken invariant (what, where) and aborts; tests may switch it
/// to throwing std::logic_error with set_internal_error_throws(true).
[[noreturn]] void on_internal_error(std::string_view what, const char* file,
                                    int line);

/// Makes on_internal_error throw instead of abort (for tests).
void set_internal_error_throws(bool throws);

} // namespace troupe

#define TROUPE_CHECK(cond, what)                                               \
  do {                                                                         \
    if (!(cond))                                                               \
      ::troupe::on_internal_error(what, __FILE__, __LINE__);                   \
  } while (false)
