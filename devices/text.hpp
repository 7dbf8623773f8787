#pragma once
/// \file Text helpers shared by every layer above: how "did you mean" hints
/// pick the closest name.
#include <cstddef>
#include <string_view>

namespace troupe::devices {

/// Levenshtein distance between a and b.
std::size_t edit_distance(std::string_view a, std::string_view b);

} // namespace troupe::devices
