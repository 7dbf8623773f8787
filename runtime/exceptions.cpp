#include "runtime/exceptions.hpp"

#include <caf/error.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/sec.hpp>

#include <string>

namespace troupe::runtime {

caf::error exception_to_error(caf::scheduled_actor*, std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return caf::make_error(caf::sec::runtime_error, std::string(x.what()));
  } catch (...) {
    return caf::make_error(caf::sec::runtime_error,
                           std::string("an exception that is not a "
                                       "std::exception"));
  }
}

} // namespace troupe::runtime
