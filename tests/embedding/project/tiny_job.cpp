// Trains a small classifier on a CSV file it writes, in this process, with
// the graph API, and prints what it got.
#include <actors/graph.hpp>

#include <cstdio>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: tiny_job DIR\n");
    return 2;
  }
  const std::string csv = std::string(argv[1]) + "/train.csv";
  {
    // Two classes, by the sign of x - y; a fixed pattern, no randomness.
    std::ofstream out(csv);
    for (int i = 0; i < 256; ++i) {
      const double x = ((i * 37) % 101) / 50.0 - 1;
      const double y = ((i * 53) % 97) / 48.0 - 1;
      out << x << ',' << y << ',' << (x > y ? 1 : 0) << '\n';
    }
  }
  auto result = troupe::graph("embedded")
                    .csv_data({csv}, {}, "", 2)
                    .batch(32)
                    .dense(8)
                    .relu()
                    .dense(2)
                    .loss("cross_entropy")
                    .optimizer("adam", 0.05)
                    .epochs(4)
                    .seed(7)
                    .threads(1)
                    .run();
  std::printf("steps %lld params_digest %s\n",
              static_cast<long long>(result.steps),
              result.params_digest.c_str());
  return 0;
}
