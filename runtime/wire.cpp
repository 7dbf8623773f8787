#include "runtime/wire.hpp"

#include "schema/troupe.capnp.h"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstring>

#include <fmt/format.h>

namespace troupe::runtime {

std::vector<std::uint8_t> encode_tensor(const devices::tensor& t) {
  capnp::MallocMessageBuilder msg;
  auto root = msg.initRoot<schema::Tensor>();
  root.setDtype(schema::DType::FLOAT32);
  auto shape = root.initShape(static_cast<unsigned>(t.rank()));
  for (std::size_t i = 0; i < t.rank(); ++i)
    shape.set(static_cast<unsigned>(i), static_cast<std::uint64_t>(t.dim(i)));
  root.setData(capnp::Data::Reader(
      reinterpret_cast<const capnp::byte*>(t.data()), t.bytes()));
  auto words = capnp::messageToFlatArray(msg);
  auto bytes = words.asBytes();
  return std::vector<std::uint8_t>(bytes.begin(), bytes.end());
}

devices::tensor decode_tensor(const std::uint8_t* data, std::size_t bytes) {
  if (bytes % sizeof(capnp::word) != 0)
    throw wire_error(
        fmt::format("tensor frame of {} bytes is not word-aligned", bytes));
  // Copy into word-aligned storage; Cap'n Proto reads words in place.
  kj::Array<capnp::word> words =
      kj::heapArray<capnp::word>(bytes / sizeof(capnp::word));
  std::memcpy(words.begin(), data, bytes);
  try {
    capnp::ReaderOptions opts;
    opts.traversalLimitInWords = 1ull << 40;
    capnp::FlatArrayMessageReader reader(words, opts);
    auto root = reader.getRoot<schema::Tensor>();
    if (root.getDtype() != schema::DType::FLOAT32)
      throw wire_error("tensor frame: unsupported dtype");
    devices::shape_t shape;
    std::uint64_t n = 1;
    for (auto d : root.getShape()) {
      if (d > (1ull << 40))
        throw wire_error(
            fmt::format("tensor frame: dimension {} too large", d));
      n *= d;
      shape.push_back(static_cast<std::int64_t>(d));
    }
    auto payload = root.getData();
    if (payload.size() != n * sizeof(float))
      throw wire_error(fmt::format(
          "tensor frame: shape {} needs {} bytes but the payload has {}",
          devices::to_string(shape), n * sizeof(float), payload.size()));
    return devices::tensor::from(
        std::move(shape), reinterpret_cast<const float*>(payload.begin()));
  } catch (const kj::Exception& e) {
    throw wire_error(
        fmt::format("tensor frame: {}", e.getDescription().cStr()));
  }
}

} // namespace troupe::runtime
