// Pipeline files (runtime/config.hpp, actors/job_spec.hpp): TOML, then
// every key checked.
#include "actors/job_spec.hpp"
#include "runtime/config.hpp"
#include "tools/fuzz/seeds_init.hpp"

namespace tf = troupe::fuzz;
namespace rt = troupe::runtime;

std::vector<tf::bytes> tf::fuzz_seeds() {
  return {text(R"([job]
seed = 3
epochs = 2
mode = "ssp"
staleness = 2
patience = 3
[data]
format = "csv"
train = "train.csv"
test = "test.csv"
batch = 48
shards = 3
shape = [4]
[model]
layers = [ { type = "dense", units = 32 }, { type = "relu" }, { type = "dropout", rate = 0.1 }, { type = "dense", units = 3 } ]
partitions = 3
[optimizer]
type = "adamw"
lr = 0.01
clip_norm = 1.0
schedule = "cosine"
warmup_steps = 10
[cluster]
workers = 3
[supervision]
snapshot_every = 10
[[chaos]]
kill = "worker:0"
at_step = 5
)"),
          text(R"([data]
train = ["a-images-idx3-ubyte.gz", "a-labels-idx1-ubyte.gz"]
shape = [1, 28, 28]
[model]
layers = [ { type = "conv2d", channels = 8, kernel = 3, padding = 1 }, { type = "batch_norm" }, { type = "max_pool2d", kernel = 2 }, { type = "flatten" }, { type = "layer_norm" }, { type = "dense", units = 10 } ]
)")};
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t n) {
  try {
    auto cfg = rt::config::parse(
        std::string_view(reinterpret_cast<const char*>(data), n), "fuzz.toml",
        {});
    troupe::actors::parse_job_spec(cfg);
  } catch (const rt::config_error&) {
  }
  return 0;
}
