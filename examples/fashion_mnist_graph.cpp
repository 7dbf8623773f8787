// The graph of examples/fashion_mnist.toml, built with the C++ graph API.
// Prints the epoch lines and the digest; the digest equals the one
// `troupe run examples/fashion_mnist.toml` prints. With MODEL.onnx, the
// trained model is saved there (as `troupe run --save` does).
//   fashion_mnist_graph [EPOCHS [LOCAL_NODES [MODEL.onnx]]]
#include "actors/graph.hpp"
#include "data/dataset.hpp"
#include "modelio/onnx_model.hpp"
#include "runtime/config.hpp"

#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace {

const char* usage =
    "usage: fashion_mnist_graph [EPOCHS [LOCAL_NODES [MODEL.onnx]]]\n"
    "Trains the job of examples/fashion_mnist.toml, built with the C++ graph\n"
    "API, for EPOCHS epochs (default 3) on LOCAL_NODES local node processes\n"
    "(default 1), and prints each epoch and the parameters' digest. With\n"
    "MODEL.onnx, saves the trained model there.\n";

// A whole number >= 1, or -1.
long positive(const char* text) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  return end != text && *end == '\0' && v >= 1 ? v : -1;
}

} // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::strcmp(argv[1], "--help") == 0 ||
                   std::strcmp(argv[1], "-h") == 0)) {
    std::fputs(usage, stdout);
    return 0;
  }
  if (argc > 4) {
    std::fprintf(stderr, "fashion_mnist_graph: too many arguments\n%s", usage);
    return 2;
  }
  const long epochs = argc > 1 ? positive(argv[1]) : 3;
  const long nodes = argc > 2 ? positive(argv[2]) : 1;
  if (epochs < 1 || nodes < 1) {
    std::fprintf(stderr,
                 "fashion_mnist_graph: %s: \"%s\" is not a whole number >= "
                 "1\n%s",
                 epochs < 1 ? "EPOCHS" : "LOCAL_NODES",
                 epochs < 1 ? argv[1] : argv[2], usage);
    return 2;
  }
  const std::string d = "/usr/share/datasets/fashion-mnist/";
  auto g = troupe::graph("fashion-mnist-mlp")
               .idx_data(d + "train-images-idx3-ubyte.gz",
                         d + "train-labels-idx1-ubyte.gz",
                         d + "t10k-images-idx3-ubyte.gz",
                         d + "t10k-labels-idx1-ubyte.gz")
               .shards(2)
               .batch(64)
               .dense(128)
               .relu()
               .dense(10)
               .loss("cross_entropy")
               .partitions(2)
               .optimizer("adam", 0.001)
               .workers(2)
               .epochs(epochs)
               .seed(42)
               .set("cluster.local_nodes", std::to_string(nodes));
  troupe::actors::run_observer obs;
  obs.on_epoch = [](const troupe::actors::epoch_summary& e) {
    fmt::print(
        "epoch {}  train_loss {:.4f}  test_loss {:.4f}  test_acc {:.4f}\n",
        e.epoch, e.train_loss, e.test_loss, e.test_accuracy.value_or(0));
  };
  try {
    auto r = g.run(obs);
    fmt::print("params_digest {}\n", r.params_digest);
    if (argc > 3) {
      g.save(argv[3]);
      fmt::print("model saved: {}\n", argv[3]);
    }
    return 0;
  } catch (const troupe::modelio::model_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  } catch (const troupe::runtime::config_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  } catch (const troupe::data::data_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "training failed: %s\n", e.what());
    return 1;
  }
}
