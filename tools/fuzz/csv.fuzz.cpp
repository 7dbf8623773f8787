// CSV data files (data/csv.cpp), with and without a header and text labels.
#include "data/dataset.hpp"
#include "tools/fuzz/seeds_init.hpp"

namespace tf = troupe::fuzz;
namespace td = troupe::data;

std::vector<tf::bytes> tf::fuzz_seeds() {
  return {text("a,b,c,label\n0.5,1,-2,0\n1e3,2.5,3,1\n0,0,0,2\n"),
          text("\xEF\xBB\xBF"
               "x,y,kind\n1,2,cat\n3,4,dog\n5,6,cat\n"),
          text("1,2,3\n4,5,6\n\n7,8,9\n"), text("\"q\",b\n\"1\",2\n")};
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t n) {
  const auto path = tf::as_file(data, n);
  for (std::int64_t classes : {-1, 0, 3}) {
    try {
      td::read_csv({path}, "", classes);
    } catch (const td::data_error&) {
    }
  }
  return 0;
}
