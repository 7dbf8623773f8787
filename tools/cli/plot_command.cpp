// troupe plot METRICS.jsonl... -o FILE.svg|FILE.png: the runs' curves.
#include "tools/cli/commands.hpp"

#include "tools/watch/plot.hpp"

#include <cstdio>
#include <memory>

namespace troupe::cli {

namespace {

struct plot_options {
  std::vector<std::string> files;
  std::string output;
  std::string x = "step";
  std::string title;
  int width = 1200;
  int height = 800;
};

int plot(const plot_options& o) {
  if (!watch::plot_format_known(o.output)) {
    std::fprintf(stderr,
                 "troupe: -o %s: the plot is written as .svg or .png; name "
                 "the file so\n",
                 o.output.c_str());
    return exit_bad_input;
  }
  std::vector<watch::run_series> runs;
  try {
    for (const auto& f : o.files) {
      auto in_file = watch::read_metrics(f);
      if (in_file.empty()) {
        std::fprintf(stderr, "troupe: %s: no run in it (no JSON lines)\n",
                     f.c_str());
        return exit_bad_input;
      }
      for (auto& r : in_file)
        runs.push_back(std::move(r));
    }
    // Several runs of one file keep apart by their number in it.
    for (std::size_t i = 0; i < runs.size(); ++i)
      for (std::size_t j = i + 1; j < runs.size(); ++j)
        if (runs[j].label == runs[i].label)
          runs[j].label += " #" + std::to_string(j - i + 1);
    watch::plot_options po;
    po.by_time = o.x == "time";
    po.title = o.title;
    po.width = o.width;
    po.height = o.height;
    watch::write_plot(runs, po, o.output);
  } catch (const watch::metrics_error& e) {
    std::fprintf(stderr, "troupe: %s\n", e.what());
    return exit_bad_input;
  }
  std::fprintf(stderr, "troupe: %zu run(s) plotted to %s\n", runs.size(),
               o.output.c_str());
  return exit_ok;
}

} // namespace

void add_plot_command(CLI::App& app, int* code) {
  auto opts = std::make_shared<plot_options>();
  auto* cmd = app.add_subcommand(
      "plot", "Draw the curves of `troupe run --metrics` files (runs "
              "overlaid) as an SVG or PNG file");
  cmd->add_option("metrics", opts->files,
                  "Metrics files (JSON lines); every run in each is drawn")
      ->required();
  cmd->add_option("-o,--output", opts->output,
                  "The figure: FILE.svg or FILE.png")
      ->required();
  cmd->add_option("--x", opts->x,
                  "x axis: step (steps done) or time (seconds since start)")
      ->capture_default_str()
      ->check(CLI::IsMember({"step", "time"}));
  cmd->add_option("--title", opts->title,
                  "Title (default: troupe and the runs' names)");
  cmd->add_option("--width", opts->width, "Width in pixels")
      ->capture_default_str()
      ->check(CLI::Range(300, 10000));
  cmd->add_option("--height", opts->height, "Height in pixels")
      ->capture_default_str()
      ->check(CLI::Range(200, 10000));
  cmd->callback([opts, code] { *code = plot(*opts); });
}

} // namespace troupe::cli
