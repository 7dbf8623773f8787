#pragma once
/// \file Forward declarations for runtime/.
namespace troupe::runtime {
class config;
class config_error;
struct run_clock;
} // namespace troupe::runtime
