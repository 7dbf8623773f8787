#pragma once
/// \file Tensors in Cap'n Proto frames (schema/troupe.capnp), for files and
/// for anything that leaves the process. The payload is one raw byte block.
#include "devices/tensor.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe::runtime {

/// A frame that cannot be decoded; what() says why.
class wire_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Encodes a CPU tensor as a Cap'n Proto Tensor message (flat words).
std::vector<std::uint8_t> encode_tensor(const devices::tensor& t);

/// Decodes and validates (dtype, shape, byte count). Throws wire_error.
devices::tensor decode_tensor(const std::uint8_t* data, std::size_t bytes);

} // namespace troupe::runtime
