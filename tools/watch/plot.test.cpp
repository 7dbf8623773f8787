#include "tools/watch/plot.hpp"

#include "data/test_files.hpp"
#include "tools/watch/metrics.hpp"

#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

namespace tw = troupe::watch;

namespace {

// A fresh directory with files written into it.
struct scratch : troupe::data::testing::temp_dir {
  std::string dir = path.string();
  std::string file(const std::string& name, const std::string& text) const {
    const auto at = temp_dir::file(name);
    std::ofstream(at, std::ios::binary) << text;
    return at;
  }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos;
       p = text.find(what, p + 1))
    ++n;
  return n;
}

// Two runs in one file, the second killed while writing its last line.
const char* two_runs =
    R"({"event":"start","t":0,"job":"mlp","config":{}}
{"event":"progress","t":1.0,"epoch":1,"step":10,"steps":40,"loss":2.0,"lr":0.1,"samples_per_s":null}
{"event":"progress","t":2.0,"epoch":1,"step":20,"steps":40,"loss":1.0,"lr":0.1,"samples_per_s":640}
{"event":"fault","t":2.1,"step":20,"actor":"worker:0","node":null,"ms":null,"message":"fault injected: kill worker:0"}
{"event":"epoch","t":2.5,"epoch":1,"steps":20,"train_loss":1.5,"test_loss":1.2,"test_accuracy":0.6}
{"event":"recovered","t":2.6,"step":21,"actor":"worker:0","node":null,"ms":120,"message":"worker:0 recovered"}
{"event":"progress","t":3.0,"epoch":2,"step":30,"steps":40,"loss":0.5,"lr":0.05,"samples_per_s":700}
{"event":"end","t":4,"params_digest":"ab"}
{"event":"start","t":0,"job":"mlp","config":{}}
{"event":"progress","t":1.0,"epoch":1,"step":10,"steps":40,"loss":2.5,"lr":0.1,"samples_per_s":null}
{"event":"progress","t":2.0,"epoch":1,"step":20,"st)";

} // namespace

BOOST_AUTO_TEST_SUITE(plot)

BOOST_AUTO_TEST_CASE(metrics_files_read_back_as_runs) {
  scratch s;
  const auto runs = tw::read_metrics(s.file("m.jsonl", two_runs));
  BOOST_REQUIRE(runs.size() == 2u);
  const auto& a = runs[0];
  BOOST_TEST(a.label == "mlp (m.jsonl)");
  BOOST_TEST(a.finished);
  BOOST_TEST(a.loss.size() == 3u);
  BOOST_TEST(a.loss[1].step == 20.0);
  BOOST_TEST(a.loss[1].value == 1.0);
  BOOST_TEST(a.samples_per_s.size() == 2u); // null is no value
  BOOST_TEST(a.lr.back().value == 0.05);
  BOOST_TEST(a.test_loss.size() == 1u);
  BOOST_TEST(a.test_accuracy[0].value == 0.6);
  BOOST_REQUIRE(a.events.size() == 2u);
  BOOST_TEST(a.events[0].kind == "fault");
  BOOST_TEST(a.events[1].t == 2.6);
  const auto& b = runs[1];
  BOOST_TEST(!b.finished);
  BOOST_TEST(b.loss.size() == 1u); // the cut line is left out
}

BOOST_AUTO_TEST_CASE(bad_lines_are_named) {
  scratch s;
  auto error_of = [&](const std::string& text) {
    try {
      tw::read_metrics(s.file("bad.jsonl", text));
    } catch (const tw::metrics_error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const auto e = error_of("{\"event\":\"start\"}\nnot json\n{}\n");
  BOOST_TEST(e.find("bad.jsonl:2: not a JSON line") != std::string::npos, e);
  BOOST_TEST(error_of("[1,2]\n").find("bad.jsonl:1: expected a JSON object, "
                                      "got array") != std::string::npos);
  try {
    tw::read_metrics(s.dir + "/none.jsonl");
    BOOST_FAIL("no error");
  } catch (const tw::metrics_error& e) {
    BOOST_TEST(std::string(e.what()).find("none.jsonl: cannot open") !=
               std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(the_svg_overlays_runs_and_marks_events) {
  scratch s;
  auto runs = tw::read_metrics(s.file("m.jsonl", two_runs));
  runs[1].label = "mlp (m.jsonl) #2";
  const auto svg = tw::render_svg(runs, {});
  // One curve per run and figure that has values: loss (2 runs), test loss,
  // test accuracy, samples/s and lr (first run), lr (second).
  BOOST_TEST(count(svg, "<polyline class=\"curve\" data-run=\"0\"") == 5u);
  BOOST_TEST(count(svg, "<polyline class=\"curve\" data-run=\"1\"") == 2u);
  // Each event in each of the four panels.
  BOOST_TEST(count(svg, "data-kind=\"fault\"") == 4u);
  BOOST_TEST(count(svg, "data-kind=\"recovered\"") == 4u);
  BOOST_TEST(svg.find("mlp (m.jsonl) #2 (unfinished)") != std::string::npos);
  BOOST_TEST(svg.find("<title>fault injected: kill worker:0</title>") !=
             std::string::npos);
  // The first run's loss: step 10 of an x axis 0..30, panel 0 (x 90..585).
  BOOST_TEST(svg.find("points=\"255.0,") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(png_and_svg_files_and_what_is_refused) {
  scratch s;
  const auto runs = tw::read_metrics(s.file("m.jsonl", two_runs));
  tw::plot_options o;
  o.width = 640;
  o.height = 480;
  const auto png = s.dir + "/plot.png";
  tw::write_plot(runs, o, png);
  const auto bytes = slurp(png);
  BOOST_REQUIRE(bytes.size() > 24u);
  BOOST_TEST(bytes.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR: width and height, big-endian.
  auto be32 = [&](std::size_t at) {
    return (static_cast<unsigned char>(bytes[at]) << 24) |
           (static_cast<unsigned char>(bytes[at + 1]) << 16) |
           (static_cast<unsigned char>(bytes[at + 2]) << 8) |
           static_cast<unsigned char>(bytes[at + 3]);
  };
  BOOST_TEST(be32(16) == 640u);
  BOOST_TEST(be32(20) == 480u);
  const auto svg = s.dir + "/plot.SVG";
  tw::write_plot(runs, o, svg);
  BOOST_TEST(slurp(svg).rfind("<?xml", 0) == 0u);
  try {
    tw::write_plot(runs, o, s.dir + "/plot.pdf");
    BOOST_FAIL("no error");
  } catch (const tw::metrics_error& e) {
    BOOST_TEST(std::string(e.what()).find("written as .svg or .png") !=
               std::string::npos);
  }
  // A directory that is not there: named, and nothing left behind.
  try {
    tw::write_plot(runs, o, s.dir + "/no/plot.svg");
    BOOST_FAIL("no error");
  } catch (const tw::metrics_error& e) {
    BOOST_TEST(std::string(e.what()).find("no/plot.svg: cannot write") !=
               std::string::npos);
  }
}

BOOST_AUTO_TEST_SUITE_END()
