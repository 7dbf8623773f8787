#pragma once
/// \file Forward declarations for runtime/.
namespace troupe::runtime {
class config;
class config_error;
} // namespace troupe::runtime
