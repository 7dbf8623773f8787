#include "runtime/wire.hpp"

#include "runtime/tensor_capnp.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>

#include <cstring>

#include <fmt/format.h>

namespace troupe::runtime {

void set_tensor(schema::Tensor::Builder b, const devices::tensor& t) {
  b.setDtype(schema::DType::FLOAT32);
  auto shape = b.initShape(static_cast<unsigned>(t.rank()));
  for (std::size_t i = 0; i < t.rank(); ++i)
    shape.set(static_cast<unsigned>(i), static_cast<std::uint64_t>(t.dim(i)));
  b.setData(capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(t.data()),
                                t.bytes()));
}

devices::tensor get_tensor(schema::Tensor::Reader r) {
  if (r.getDtype() != schema::DType::FLOAT32)
    throw wire_error("unsupported dtype");
  devices::shape_t shape;
  std::uint64_t n = 1;
  for (auto d : r.getShape()) {
    if (d > (1ull << 40))
      throw wire_error(fmt::format("dimension {} too large", d));
    n *= d;
    shape.push_back(static_cast<std::int64_t>(d));
  }
  auto payload = r.getData();
  if (payload.size() != n * sizeof(float))
    throw wire_error(fmt::format(
        "shape {} needs {} bytes but the payload has {}",
        devices::to_string(shape), n * sizeof(float), payload.size()));
  return devices::tensor::from(std::move(shape),
                               reinterpret_cast<const float*>(payload.begin()));
}

std::vector<std::uint8_t> encode_tensor(const devices::tensor& t) {
  capnp::MallocMessageBuilder msg;
  set_tensor(msg.initRoot<schema::Tensor>(), t);
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
    return get_tensor(reader.getRoot<schema::Tensor>());
  } catch (const wire_error& e) {
    throw wire_error(fmt::format("tensor frame: {}", e.what()));
  } catch (const kj::Exception& e) {
    throw wire_error(
        fmt::format("tensor frame: {}", e.getDescription().cStr()));
  }
}

} // namespace troupe::runtime
