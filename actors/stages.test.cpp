#include "actors/stages.hpp"
#include "actors/graph.hpp"
#include "actors/job_spec.hpp"

#include "runtime/config.hpp"

#include <boost/test/unit_test.hpp>

#include <set>

namespace st = troupe::stages;
namespace ta = troupe::actors;
using troupe::runtime::config;
using troupe::runtime::config_error;

namespace {

// Adds `offset` to every feature; reads one setting.
class shift final : public st::data_stage {
public:
  explicit shift(float by)
    : by_(by) {}
  void transform(troupe::devices::tensor& x, troupe::devices::tensor&,
                 const st::batch_context&) override {
    for (std::int64_t i = 0; i < x.numel(); ++i)
      x.data()[i] += by_;
  }

private:
  float by_;
};

class never final : public st::controller {
public:
  st::decision on_epoch(const st::epoch_figures&) override { return {}; }
};

// Registered once for the whole test binary.
void register_test_types() {
  static const bool done = [] {
    st::register_data_stage(
        "test_shift", [](const st::params& p, const st::sample_info&) {
          return std::make_unique<shift>(
              static_cast<float>(p.number("by", 1.0, -10, 10)));
        });
    st::register_controller("test_never", [](const st::params& p) {
      p.integer("patience", 1, 1, 5);
      return std::make_unique<never>();
    });
    return true;
  }();
  (void)done;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

const std::string job = R"([data]
format = "csv"
train = "t.csv"
[model]
layers = [ { type = "dense", units = 3 } ]
)";

std::string parse_error(const std::string& text) {
  return error_of([&] {
    auto c = config::parse(text, "p.toml", {});
    ta::parse_job_spec(c);
  });
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

BOOST_AUTO_TEST_SUITE(stages_suite)

BOOST_AUTO_TEST_CASE(settings_are_read_as_their_type_and_named_when_bad) {
  const st::params p("stage[1]", {{"pad", "3"},
                                  {"rate", "0.25"},
                                  {"flip", "true"},
                                  {"mode", "edge"},
                                  {"bad", "x1"}});
  BOOST_TEST(p.integer("pad", 0, 0, 8) == 3);
  BOOST_TEST(p.number("rate", 0, 0, 1) == 0.25);
  BOOST_TEST(p.flag("flip", false));
  BOOST_TEST(p.text("mode", "zero") == "edge");
  BOOST_TEST(p.integer("absent", 7, 0, 8) == 7);
  BOOST_TEST(error_of([&] { p.integer("bad", 0, 0, 8); }) ==
             "stage[1].bad: expected an integer, got \"x1\"");
  BOOST_TEST(error_of([&] { p.integer("pad", 0, 0, 2); }) ==
             "stage[1].pad: 3 is out of range [0, 2]");
  BOOST_TEST(error_of([&] { p.number("mode", 0, 0, 1); }) ==
             "stage[1].mode: expected a number, got \"edge\"");
  BOOST_TEST(error_of([&] { p.flag("rate", false); }) ==
             "stage[1].rate: expected true or false, got \"0.25\"");
  const st::params q("stage[0]", {{"pad", "1"}, {"padd", "2"}});
  q.integer("pad", 0, 0, 8);
  BOOST_TEST(q.unread() == std::vector<std::string>{"padd"});
}

BOOST_AUTO_TEST_CASE(types_register_once_by_a_proper_name) {
  register_test_types();
  BOOST_TEST(st::has_data_stage("test_shift"));
  BOOST_TEST(st::has_controller("test_never"));
  BOOST_TEST(!st::has_data_stage("test_never"));
  BOOST_TEST(has(error_of([] {
                   st::register_data_stage(
                       "test_shift",
                       [](const st::params&, const st::sample_info&) {
                         return std::unique_ptr<st::data_stage>();
                       });
                 }),
                 "\"test_shift\" is registered already"));
  BOOST_TEST(
      has(error_of([] { st::register_controller("bad name!", nullptr); }),
          "a name is 1 to 64 letters"));
  // An unknown type: the closest, the registered ones, where types come
  // from.
  const auto e = error_of(
      [] { st::make_data_stage("test_shif", st::params("stage[0]", {}), {}); });
  BOOST_TEST(has(e, "stage[0].type: no data stage \"test_shif\" is "
                    "registered in this process (did you mean "
                    "\"test_shift\"?)"),
             e);
  BOOST_TEST(has(e, "--plugin LIB.so"), e);
  // A setting the stage did not read.
  const auto u = error_of([] {
    st::make_data_stage(
        "test_shift", st::params("stage[0]", {{"by", "2"}, {"bye", "3"}}), {});
  });
  BOOST_TEST(u == "stage[0].bye: unknown setting for \"test_shift\" (it "
                  "reads: by)",
             u);
  auto s = st::make_data_stage("test_shift",
                               st::params("stage[0]", {{"by", "2"}}), {});
  auto x = troupe::devices::tensor::zeros({2, 3});
  auto y = troupe::devices::tensor::zeros({2});
  s->transform(x, y, {});
  BOOST_TEST(x.data()[5] == 2.0f);
}

BOOST_AUTO_TEST_CASE(a_batch_context_draws_by_batch_not_by_history) {
  st::batch_context a;
  a.seed = 42;
  a.epoch = 1;
  a.step = 7;
  a.worker = 2;
  auto b = a;
  // The same batch draws the same, whatever was drawn before.
  std::vector<std::uint64_t> first;
  for (std::uint64_t i = 0; i < 100; ++i)
    first.push_back(a.bits(i));
  for (std::uint64_t i = 100; i-- > 0;)
    BOOST_TEST(b.bits(i) == first[i]);
  // Another worker, step, epoch, position or seed draws otherwise.
  std::set<std::uint64_t> seen{a.bits(0)};
  for (auto change : {0, 1, 2, 3, 4}) {
    auto c = a;
    if (change == 0)
      c.worker = 3;
    if (change == 1)
      c.step = 8;
    if (change == 2)
      c.epoch = 2;
    if (change == 3)
      c.position = 1;
    if (change == 4)
      c.seed = 43;
    BOOST_TEST(seen.insert(c.bits(0)).second, "change " << change);
  }
  // below(i, n) covers [0, n) about evenly; uniform is in [0, 1).
  std::vector<int> count(5, 0);
  for (std::uint64_t i = 0; i < 5000; ++i) {
    const auto v = a.below(i, 5);
    BOOST_REQUIRE(v < 5u);
    ++count[v];
    const auto u = a.uniform(i);
    BOOST_REQUIRE(u >= 0.0f);
    BOOST_REQUIRE(u < 1.0f);
  }
  for (int c : count)
    BOOST_TEST(std::abs(c - 1000) < 150, c);
}

BOOST_AUTO_TEST_CASE(pipelines_place_stages_and_a_controller) {
  register_test_types();
  auto c = config::parse(job + R"([[stage]]
type = "test_shift"
by = 0.5
[[stage]]
type = "test_shift"
[controller]
type = "test_never"
patience = 3
)",
                         "p.toml", {});
  const auto s = ta::parse_job_spec(c);
  BOOST_REQUIRE_EQUAL(s.stages.size(), 2u);
  BOOST_TEST(s.stages[0].type == "test_shift");
  BOOST_TEST(s.stages[0].params.at("by") == "0.5");
  BOOST_TEST(s.stages[1].params.empty());
  BOOST_TEST(s.controller.type == "test_never");
  BOOST_TEST(s.controller.params.at("patience") == "3");
  // Numbers stay numbers in the resolved pipeline.
  BOOST_TEST(has(c.resolved_json(), "\"by\" : 0.5"), c.resolved_json());
}

BOOST_AUTO_TEST_CASE(bad_stages_in_a_pipeline_are_named) {
  register_test_types();
  auto e = parse_error(job + "[[stage]]\ntype = \"tset_shift\"\n");
  BOOST_TEST(has(e, "p.toml:7:8: stage[0].type: no data stage \"tset_shift\""),
             e);
  BOOST_TEST(has(e, "did you mean \"test_shift\"?"), e);
  e = parse_error(job + "[[stage]]\nby = 1\n");
  BOOST_TEST(has(e, "stage[0].type: missing: the registered name of the "
                    "stage"),
             e);
  e = parse_error(job + "[[stage]]\ntype = \"test_shift\"\nby = 99\n");
  BOOST_TEST(has(e, "stage[0].by: 99 is out of range [-10, 10]"), e);
  e = parse_error(job + "[[stage]]\ntype = \"test_shift\"\nby = [1]\n");
  BOOST_TEST(has(e, "stage[0].by: expected a string, number or boolean, got "
                    "an array"),
             e);
  e = parse_error(job + "[controller]\ntype = \"test_never\"\npatience = 9\n");
  BOOST_TEST(has(e, "controller.patience: 9 is out of range [1, 5]"), e);
  e = parse_error(job + "[controller]\ntype = \"test_never\"\npatiense = 2\n");
  BOOST_TEST(has(e, "controller.patiense: unknown setting for \"test_never\""),
             e);
  e = parse_error(job + "[controller]\ntype = \"test_shift\"\n");
  BOOST_TEST(has(e, "no controller \"test_shift\" is registered"), e);
}

BOOST_AUTO_TEST_CASE(a_decision_scales_the_lr_from_two_epochs_on) {
  ta::job_spec s;
  s.optimizer.lr = 0.5f;
  s.epochs = 6;
  s.steps_per_epoch = 10;
  const std::vector<double> decided{1.0, 0.5, 0.1};
  // Epoch 1's decision (x1) from step 21, epoch 2's (x0.5) from step 31,
  // epoch 3's (x0.1) from step 41; steps are 1-based.
  BOOST_TEST(s.lr_at(30, decided) == 0.5);
  BOOST_TEST(s.lr_at(31, decided) == 0.25);
  BOOST_TEST(s.lr_at(40, decided) == 0.25);
  BOOST_TEST(std::abs(s.lr_at(41, decided) - 0.025) < 1e-12);
  BOOST_TEST(std::abs(s.lr_at(60, decided) - 0.025) < 1e-12);
  // Decisions not made yet change nothing.
  BOOST_TEST(s.lr_at(41, {1.0}) == 0.5);
}

BOOST_AUTO_TEST_CASE(the_graph_api_places_stages_like_a_pipeline_file) {
  register_test_types();
  // A layer that keeps its input, with one setting.
  class same final : public troupe::devices::nn::custom_layer {
  public:
    troupe::devices::shape_t
    output_shape(const troupe::devices::shape_t& in) const override {
      return in;
    }
    void forward(const float*, float*, std::int64_t,
                 const troupe::devices::shape_t&,
                 const std::vector<const float*>&, bool) const override {}
    void backward(const float*, const float*, const float*, float*,
                  std::int64_t, const troupe::devices::shape_t&,
                  const std::vector<const float*>&,
                  const std::vector<float*>&) const override {}
  };
  if (!troupe::devices::nn::has_layer("stages_test_layer"))
    troupe::devices::nn::register_layer(
        "stages_test_layer", [](const troupe::devices::nn::settings& s) {
          s.integer("k", 1, 1, 3);
          return std::make_unique<same>();
        });
  auto g = troupe::graph("g")
               .csv_data({"t.csv"}, {}, "", 3)
               .dense(3)
               .layer("stages_test_layer", {{"k", "2"}})
               .stage("test_shift", {{"by", "0.5"}})
               .stage("test_shift")
               .controller("test_never", {{"patience", "2"}});
  const auto text = g.to_toml();
  BOOST_TEST(has(text, "[[stage]]\ntype = \"test_shift\"\nby = \"0.5\"\n"),
             text);
  BOOST_TEST(has(text, "[controller]\ntype = \"test_never\"\npatience = \"2\""),
             text);
  auto c = config::parse(text, "graph", {});
  const auto s = ta::parse_job_spec(c);
  BOOST_TEST(s.stages.size() == 2u);
  BOOST_TEST(s.controller.params.at("patience") == "2");
  BOOST_REQUIRE_EQUAL(s.layers.size(), 2u);
  BOOST_TEST(s.layers[1].custom == "stages_test_layer");
  BOOST_TEST(s.layers[1].settings.at("k") == "2");
}

BOOST_AUTO_TEST_CASE(plugins_that_cannot_be_loaded_are_named) {
  auto e = error_of([] { st::load_plugin("/nonexistent/lib.so"); });
  BOOST_TEST(e == "--plugin /nonexistent/lib.so: no such file");
  // A shared library that is not a plugin.
  const std::string libz = "/usr/lib/x86_64-linux-gnu/libz.so.1";
  e = error_of([&] { st::load_plugin(libz); });
  BOOST_TEST(has(e, "not a troupe plugin (it has no extern \"C\" "
                    "troupe_register_stages function)"),
             e);
  // Not a library at all.
  e = error_of([] { st::load_plugin(TROUPE_SOURCE_DIR "/README.md"); });
  BOOST_TEST(has(e, "cannot load it:"), e);
  BOOST_TEST(st::loaded_plugins().empty());
}

BOOST_AUTO_TEST_SUITE_END()
