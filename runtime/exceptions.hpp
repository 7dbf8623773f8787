#pragma once
/// \file What an actor's uncaught exception becomes: an error that keeps
/// the exception's text (CAF 0.17's default handler prints it to stdout
/// and ends the actor with a bare runtime_error).
#include <exception>

namespace caf {
class error;
class scheduled_actor;
} // namespace caf

namespace troupe::runtime {

/// An exception handler for set_exception_handler: sec::runtime_error with
/// the exception's what() as its context, e.g. a device_error's CUDA
/// statement, file, line and error, so that it reaches the job's error.
caf::error exception_to_error(caf::scheduled_actor* self,
                              std::exception_ptr& e);

} // namespace troupe::runtime
