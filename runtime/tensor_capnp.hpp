#pragma once
/// \file Internal to runtime/: a tensor in and out of a Cap'n Proto Tensor
/// (schema/troupe.capnp), shared by the wire frames and the snapshot files.
#include "devices/tensor.hpp"
#include "schema/troupe.capnp.h"

namespace troupe::runtime {

/// Fills `b` with t's dtype, shape and raw bytes.
void set_tensor(schema::Tensor::Builder b, const devices::tensor& t);

/// A copy of the tensor `r` holds, checked (dtype, dimensions, byte count).
/// Throws wire_error saying what is wrong, without naming the source.
devices::tensor get_tensor(schema::Tensor::Reader r);

} // namespace troupe::runtime
