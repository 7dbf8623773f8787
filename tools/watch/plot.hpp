#pragma once
/// \file `troupe plot`: the curves of one or more runs as an SVG or PNG
/// file: train and test loss, test accuracy, samples/s and the learning
/// rate, runs overlaid, supervision events marked.
#include "tools/watch/metrics.hpp"

#include <string>
#include <vector>

namespace troupe::watch {

struct plot_options {
  bool by_time = false; ///< x axis: seconds since start (else: step)
  std::string title;    ///< empty: "troupe: " and the runs' labels
  int width = 1200;
  int height = 800;
};

/// Whether `path` names a figure write_plot can write (.svg, .png).
bool plot_format_known(const std::string& path);

/// The figure as SVG text.
std::string render_svg(const std::vector<run_series>& runs,
                       const plot_options& options);

/// Writes the figure to `path`: SVG for .svg, PNG (rendered from the SVG
/// by librsvg) for .png; anything else is refused. The file is replaced
/// only by a complete new one. Throws metrics_error.
void write_plot(const std::vector<run_series>& runs,
                const plot_options& options, const std::string& path);

} // namespace troupe::watch
