// The data plane's frame header decoder (runtime/bulk.hpp): what any peer
// that passed the handshake can send.
#include "runtime/bulk.hpp"
#include "runtime/wire.hpp"
#include "tools/fuzz/seeds_init.hpp"

namespace tf = troupe::fuzz;
namespace rt = troupe::runtime;

std::vector<tf::bytes> tf::fuzz_seeds() {
  std::vector<bytes> out;
  rt::bulk_header h;
  h.dest = 42;
  h.kind = 1;
  h.tags = {1, 7, 0, 64};
  for (const auto& shape :
       {troupe::devices::shape_t{16}, troupe::devices::shape_t{4, 8},
        troupe::devices::shape_t{}}) {
    auto frame = rt::encode_bulk_header(h, shape);
    out.emplace_back(frame.begin() + 4, frame.end()); // without the length
  }
  return out;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t n) {
  try {
    auto [h, shape] = rt::decode_bulk_header(data, n);
    // What the reader allocates next must be within the frame limit.
    if (troupe::devices::numel_of(shape) >
        static_cast<std::int64_t>(rt::max_bulk_elements))
      std::abort();
  } catch (const rt::wire_error&) {
  }
  return 0;
}
