#include "devices/device.hpp"

#include "devices/backends.hpp"

#include <fmt/format.h>

namespace troupe::devices {

void unsupported_op(const device& d, const char* op) {
  throw device_error(
      fmt::format("{}: {} has no kernel on this device", d.name(), op));
}

// The layer ops a backend has not implemented yet refuse by name; job
// validation keeps models that need them off such backends.
void device::conv2d_forward(const window_geometry&, const tensor&,
                            const tensor&, const tensor&, tensor&) {
  unsupported_op(*this, "conv2d");
}
void device::conv2d_backward(const window_geometry&, const tensor&,
                             const tensor&, const tensor&, tensor*, tensor&,
                             tensor&) {
  unsupported_op(*this, "conv2d");
}
void device::pool_forward(pool_kind, const window_geometry&, const tensor&,
                          tensor&, tensor&) {
  unsupported_op(*this, "pooling");
}
void device::pool_backward(pool_kind, const window_geometry&, const tensor&,
                           const tensor&, const tensor&, const tensor&,
                           tensor&) {
  unsupported_op(*this, "pooling");
}
void device::batch_norm_forward(bool, std::int64_t, std::int64_t, std::int64_t,
                                float, const tensor&, const tensor&,
                                const tensor&, tensor&, tensor&, tensor&) {
  unsupported_op(*this, "batch_norm");
}
void device::batch_norm_backward(std::int64_t, std::int64_t, std::int64_t,
                                 float, const tensor&, const tensor&,
                                 const tensor&, const tensor&, const tensor&,
                                 tensor*, tensor&, tensor&) {
  unsupported_op(*this, "batch_norm");
}
void device::layer_norm_forward(float, const tensor&, const tensor&,
                                const tensor&, tensor&, tensor&, tensor&) {
  unsupported_op(*this, "layer_norm");
}
void device::layer_norm_backward(float, const tensor&, const tensor&,
                                 const tensor&, const tensor&, const tensor&,
                                 tensor*, tensor&, tensor&) {
  unsupported_op(*this, "layer_norm");
}
void device::dropout_forward(float, std::uint64_t, const tensor&, tensor&,
                             tensor&) {
  unsupported_op(*this, "dropout");
}
void device::dropout_backward(const tensor&, const tensor&, tensor&) {
  unsupported_op(*this, "dropout");
}

} // namespace troupe::devices
