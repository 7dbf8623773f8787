#include "runtime/config.hpp"

#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

using troupe::runtime::config;
using troupe::runtime::config_error;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const config_error& e) {
    return e.what();
  }
  return "(no error)";
}

const char* doc = R"([job]
name = "x"
epochs = 3

[optimizer]
lr = 0.5
type = "adam"

[model]
layers = [ { type = "dense", units = 4 }, { type = "relu" } ]
)";

} // namespace

BOOST_AUTO_TEST_SUITE(config_suite)

BOOST_AUTO_TEST_CASE(typed_reads_and_defaults) {
  auto c = config::parse(doc, "p.toml");
  BOOST_TEST(c.get_string("job.name", "") == "x");
  BOOST_TEST(c.get_int("job.epochs", 1, 1, 10) == 3);
  BOOST_TEST(c.get_int("job.seed", 42, 0, 100) == 42);
  BOOST_TEST(c.get_float("optimizer.lr", 0.1, 0, 1) == 0.5);
  BOOST_TEST(c.array_size("model.layers") == 2u);
  BOOST_TEST(c.get_int("model.layers[0].units", 0, 1, 10) == 4);
  BOOST_TEST(c.where("optimizer.lr") == "p.toml:6:6");
}

BOOST_AUTO_TEST_CASE(resolved_holds_what_was_read_with_defaults_and_sets) {
  auto c = config::parse(doc, "p.toml", {"optimizer.lr=0.25"});
  c.get_string("job.name", "");
  c.get_int("job.seed", 42, 0, 100); // absent: its default
  c.get_float("optimizer.lr", 0.1, 0, 1);
  c.get_bool("job.resume", false);
  c.array_size("model.layers");
  c.get_string("model.layers[1].type", "");
  c.get_int("model.layers[1].units", 7, 1, 10); // absent in [1]
  c.get_strings("data.train");                  // absent: nothing recorded
  std::string compact;
  for (char ch : c.resolved_json())
    if (ch != ' ' && ch != '\n')
      compact += ch;
  BOOST_TEST(
      compact ==
      R"({"job":{"name":"x","resume":false,"seed":42},"model":{"layers":)"
      R"([{},{"type":"relu","units":7}]},"optimizer":{"lr":0.25}})");
  // Keys never read (optimizer.type, job.epochs) are not in it.
}

BOOST_AUTO_TEST_CASE(errors_name_position_and_key) {
  auto c = config::parse(doc, "p.toml");
  BOOST_TEST(error_of([&] { c.get_int("job.epochs", 1, 5, 10); }) ==
             "p.toml:3:10: job.epochs: 3 is out of range [5, 10]");
  BOOST_TEST(error_of([&] { c.get_int("job.name", 1, 0, 10); }) ==
             "p.toml:2:8: job.name: expected an integer, got a string");
  BOOST_TEST(error_of([&] { c.get_string("optimizer.type", "", {"sgd"}); }) ==
             "p.toml:7:8: optimizer.type: \"adam\" is not one of: sgd");
}

BOOST_AUTO_TEST_CASE(unknown_keys_are_reported) {
  auto c = config::parse(doc, "p.toml");
  c.get_string("job.name", "");
  c.get_int("job.epochs", 1, 1, 10);
  c.get_float("optimizer.lr", 0, 0, 1);
  c.get_string("optimizer.type", "");
  c.array_size("model.layers");
  c.get_string("model.layers[0].type", "");
  c.get_int("model.layers[0].units", 0, 0, 10);
  BOOST_TEST(error_of([&] { c.check_unknown(); }) ==
             "p.toml:10:52: model.layers[1].type: unknown key");
  c.get_string("model.layers[1].type", "");
  BOOST_TEST(error_of([&] { c.check_unknown(); }) == "(no error)");
  auto d = config::parse("[job]\nname = \"a\"\nlearning_rate = 3\n", "q.toml");
  d.get_string("job.name", "");
  BOOST_TEST(error_of([&] { d.check_unknown(); }) ==
             "q.toml:3:17: job.learning_rate: unknown key; [job] takes: name");
}

BOOST_AUTO_TEST_CASE(unknown_keys_get_the_closest_known_one) {
  auto read = [](config& c) {
    c.get_float("optimizer.lr", 0, 0, 1);
    c.get_float("optimizer.beta1", 0, 0, 1);
    c.get_string("optimizer.type", "");
    c.get_int("job.epochs", 1, 1, 10);
  };
  // What other tools call it.
  auto a = config::parse("[optimizer]\nlearning_rate = 0.1\n", "a.toml");
  read(a);
  BOOST_TEST(error_of([&] { a.check_unknown(); }) ==
             "a.toml:2:17: optimizer.learning_rate: unknown key (did you mean "
             "lr?); [optimizer] takes: beta1, lr, type");
  // A typo.
  auto b = config::parse("[optimizer]\nbeta = 0.9\n", "b.toml");
  read(b);
  BOOST_TEST(error_of([&] { b.check_unknown(); }) ==
             "b.toml:2:8: optimizer.beta: unknown key (did you mean beta1?); "
             "[optimizer] takes: beta1, lr, type");
  // A table of the file.
  auto c = config::parse("[optimiser]\nlr = 0.1\n", "c.toml");
  read(c);
  BOOST_TEST(error_of([&] { c.check_unknown(); }) ==
             "c.toml:1:1: optimiser: unknown key (did you mean optimizer?); "
             "the file takes: job, optimizer");
  // Nothing close: the keys it could be.
  auto d = config::parse("[optimizer]\nrate = 0.1\n", "d.toml");
  read(d);
  BOOST_TEST(error_of([&] { d.check_unknown(); }) ==
             "d.toml:2:8: optimizer.rate: unknown key; [optimizer] takes: "
             "beta1, lr, type");
}

BOOST_AUTO_TEST_CASE(malformed_toml_names_line_and_column) {
  auto msg = error_of([] { config::parse("[job]\nname = \n", "bad.toml"); });
  BOOST_TEST(msg.rfind("bad.toml:2:", 0) == 0u, msg);
}

BOOST_AUTO_TEST_CASE(overrides) {
  auto c = config::parse(doc, "p.toml",
                         {"optimizer.lr=0.01", "job.mode=async",
                          "data.train=[\"a\",\"b\"]",
                          "model.layers=[{type=\"dense\",units=10}]"});
  BOOST_TEST(c.get_float("optimizer.lr", 0, 0, 1) == 0.01);
  BOOST_TEST(c.get_string("job.mode", "") == "async"); // bare word = string
  BOOST_TEST(c.get_strings("data.train") ==
             (std::vector<std::string>{"a", "b"}));
  BOOST_TEST(c.array_size("model.layers") == 1u);
  BOOST_TEST(c.where("optimizer.lr") == "--set optimizer.lr=0.01");
  auto d = config::parse(doc, "p.toml", {"optimizer.lr=-1"});
  BOOST_TEST(error_of([&] { d.get_float("optimizer.lr", 0, 0, 1, true); }) ==
             "--set optimizer.lr=-1: optimizer.lr: -1 is out of range (0, 1]");
  BOOST_TEST(error_of([] {
               config::parse(doc, "p.toml", {"novalue"});
             }).find("expected KEY=VALUE") != std::string::npos);
  BOOST_TEST(error_of([] {
               config::parse(doc, "p.toml", {"job.name.x=1"});
             }).find("not a table") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(missing_file) {
  auto msg = error_of([] { config::load_file("/nonexistent/p.toml"); });
  BOOST_TEST(msg.find("/nonexistent/p.toml") == 0u, msg);
}

BOOST_AUTO_TEST_CASE(paths_in_a_file_are_relative_to_its_folder) {
  char tmpl[] = "/tmp/troupe-config-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const auto path = dir + "/p.toml";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    std::fputs(
        "[data]\ntrain = [\"d/a.csv\", \"/abs/b.csv\"]\ntest = \"t.csv\"\n", f);
    std::fclose(f);
  }
  auto c = config::load_file(path);
  BOOST_TEST(c.get_paths("data.train") ==
                 (std::vector<std::string>{dir + "/d/a.csv", "/abs/b.csv"}),
             boost::test_tools::per_element());
  // Given on the command line: the shell's folder, as typed.
  auto o = config::load_file(path, {"data.test=\"here.csv\""});
  BOOST_TEST(o.get_paths("data.test") == std::vector<std::string>{"here.csv"},
             boost::test_tools::per_element());
  // Text without a file: as written.
  auto t = config::parse("[data]\ntrain = \"x.csv\"\n", "graph 'g'");
  BOOST_TEST(t.get_paths("data.train") == std::vector<std::string>{"x.csv"},
             boost::test_tools::per_element());
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

BOOST_AUTO_TEST_SUITE_END()
