// Snapshot and checkpoint files (runtime/snapshot.hpp): read back on
// restarts and --resume, possibly damaged or forged.
#include "runtime/snapshot.hpp"
#include "tools/fuzz/seeds_init.hpp"

#include <fstream>
#include <iterator>

namespace tf = troupe::fuzz;
namespace rt = troupe::runtime;

std::vector<tf::bytes> tf::fuzz_seeds() {
  std::vector<bytes> out;
  for (int variant = 0; variant < 2; ++variant) {
    rt::shard_snapshot s;
    s.shard = 1;
    s.version = 12;
    s.offset = 8;
    s.total = 24;
    s.params = troupe::devices::tensor::zeros({8});
    if (variant == 1) {
      s.optimizer_state = {troupe::devices::tensor::zeros({8}),
                           troupe::devices::tensor::zeros({8})};
      s.ledger = {3, 4};
      s.job = "fingerprint";
    }
    const std::string path = as_file(nullptr, 0, 7) + ".snap";
    rt::write_snapshot_file(path, s);
    std::ifstream in(path, std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
    std::remove(path.c_str());
  }
  return out;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t n) {
  try {
    rt::read_snapshot_file(tf::as_file(data, n));
  } catch (const rt::snapshot_error&) {
  }
  return 0;
}
