#include "tools/watch/plot.hpp"

#include <fmt/format.h>

#include <cairo.h>
#include <librsvg/rsvg.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <unistd.h>

namespace troupe::watch {

namespace {

// Ten colours that stay apart for the eye, one per run.
const char* const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                               "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                               "#bcbd22", "#17becf"};

const char* colour_of(std::size_t run) {
  return palette[run % (sizeof(palette) / sizeof(palette[0]))];
}

const char* event_colour(const std::string& kind) {
  if (kind == "fault" || kind == "failed" || kind == "node_lost")
    return "#d62728";
  if (kind == "rollback" || kind == "resumed")
    return "#ff7f0e";
  if (kind == "recovered")
    return "#2ca02c";
  return "#7f7f7f"; // early_stop, controller
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        // Control characters have no place in XML 1.0.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t')
          out += c;
    }
  }
  return out;
}

// A step between ticks of 1, 2 or 5 times a power of ten, about span/5.
double tick_step(double span) {
  if (!(span > 0))
    return 1;
  const double raw = span / 5;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (raw <= m * mag)
      return m * mag;
  return 10 * mag;
}

std::string tick_text(double v) {
  if (v == 0)
    return "0";
  const double a = std::abs(v);
  if (a >= 1e7 || a < 1e-4)
    return fmt::format("{:.1e}", v);
  return fmt::format("{:.6g}", v);
}

struct range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v))
      return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
  // Room around a flat curve, and ends on ticks.
  void settle(bool from_zero) {
    if (empty()) {
      lo = 0;
      hi = 1;
    }
    if (from_zero && lo > 0)
      lo = 0;
    if (hi - lo < 1e-12) {
      const double pad = std::max(std::abs(hi) * 0.1, 1e-6);
      lo -= pad;
      hi += pad;
    }
    const double s = tick_step(hi - lo);
    lo = std::floor(lo / s) * s;
    hi = std::ceil(hi / s) * s;
  }
};

// One curve of one run in a panel.
struct curve {
  const std::vector<sample_point>* points;
  std::size_t run;
  bool dashed; // test figures: dashed with dots at each epoch
  bool markers;
};

struct panel {
  std::string title;
  std::vector<curve> curves;
  bool from_zero;
};

class svg_writer {
public:
  svg_writer(const std::vector<run_series>& runs, const plot_options& o)
    : runs_(runs)
    , o_(o) {}

  std::string render() {
    const double w = o_.width, h = o_.height;
    out_ += fmt::format(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" "
        "height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
        "font-family=\"DejaVu Sans, sans-serif\" font-size=\"12\">\n"
        "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n",
        w, h);
    std::string title = o_.title;
    if (title.empty()) {
      title = "troupe";
      for (const auto& r : runs_)
        title += (title == "troupe" ? ": " : ", ") + r.label;
    }
    out_ += fmt::format("<text x=\"{}\" y=\"24\" font-size=\"16\" "
                        "text-anchor=\"middle\">{}</text>\n",
                        w / 2, escape(title));
    // The x axis is the same for every panel: every run's whole extent.
    for (const auto& r : runs_)
      for (const auto* v :
           {&r.loss, &r.test_loss, &r.test_accuracy, &r.samples_per_s, &r.lr})
        for (const auto& p : *v)
          x_.add(x_of(p.step, p.t));
    x_.settle(true);
    std::vector<panel> panels(4);
    panels[0] = {"loss (train: solid, test: dashed)", {}, true};
    panels[1] = {"test accuracy", {}, false};
    panels[2] = {"samples/s", {}, true};
    panels[3] = {"learning rate", {}, true};
    for (std::size_t i = 0; i < runs_.size(); ++i) {
      const auto& r = runs_[i];
      panels[0].curves.push_back({&r.loss, i, false, false});
      panels[0].curves.push_back({&r.test_loss, i, true, true});
      panels[1].curves.push_back({&r.test_accuracy, i, false, true});
      panels[2].curves.push_back({&r.samples_per_s, i, false, false});
      panels[3].curves.push_back({&r.lr, i, false, false});
    }
    const double top = 40,
                 legend_h =
                     22.0 * static_cast<double>((runs_.size() + 2) / 3) + 28;
    const double pw = (w - 40) / 2, ph = (h - top - legend_h - 20) / 2;
    for (std::size_t k = 0; k < panels.size(); ++k)
      draw_panel(panels[k], 20 + static_cast<double>(k % 2) * pw,
                 top + static_cast<double>(k / 2) * ph, pw, ph);
    draw_legend(h - legend_h);
    out_ += "</svg>\n";
    return out_;
  }

private:
  double x_of(double step, double t) const { return o_.by_time ? t : step; }

  void draw_panel(const panel& p, double x0, double y0, double w, double h) {
    // Plot area inside the panel: room for tick labels and the title.
    const double left = x0 + 70, right = x0 + w - 15;
    const double top = y0 + 28, bottom = y0 + h - 40;
    range y;
    for (const auto& c : p.curves)
      for (const auto& pt : *c.points)
        y.add(pt.value);
    const bool no_data = y.empty();
    y.settle(p.from_zero);
    auto px = [&](double v) {
      return left + (v - x_.lo) / (x_.hi - x_.lo) * (right - left);
    };
    auto py = [&](double v) {
      return bottom - (v - y.lo) / (y.hi - y.lo) * (bottom - top);
    };
    out_ +=
        fmt::format("<g class=\"panel\" data-title=\"{}\">\n", escape(p.title));
    out_ += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"14\" "
                        "text-anchor=\"middle\">{}</text>\n",
                        (left + right) / 2, y0 + 18, escape(p.title));
    // Grid and ticks.
    const double ys = tick_step(y.hi - y.lo);
    for (double v = y.lo; v <= y.hi + ys * 1e-6; v += ys) {
      out_ += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" "
                          "y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>\n",
                          left, py(v), right, py(v));
      out_ += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" "
                          "text-anchor=\"end\">{}</text>\n",
                          left - 6, py(v) + 4, tick_text(v));
    }
    const double xs = tick_step(x_.hi - x_.lo);
    for (double v = x_.lo; v <= x_.hi + xs * 1e-6; v += xs) {
      out_ += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" "
                          "y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>\n",
                          px(v), top, px(v), bottom);
      out_ += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" "
                          "text-anchor=\"middle\">{}</text>\n",
                          px(v), bottom + 16, tick_text(v));
    }
    out_ += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" "
                        "text-anchor=\"middle\" fill=\"#555\">{}</text>\n",
                        (left + right) / 2, bottom + 32,
                        o_.by_time ? "seconds since start" : "step");
    out_ += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" "
                        "height=\"{:.1f}\" fill=\"none\" stroke=\"#333\"/>\n",
                        left, top, right - left, bottom - top);
    if (no_data)
      out_ +=
          fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" "
                      "text-anchor=\"middle\" fill=\"#999\">no data</text>\n",
                      (left + right) / 2, (top + bottom) / 2);
    // Events: a vertical line each, in the colour of their kind.
    for (std::size_t i = 0; i < runs_.size(); ++i)
      for (const auto& e : runs_[i].events) {
        const double x = px(x_of(e.step, e.t));
        out_ += fmt::format(
            "<line class=\"event\" data-kind=\"{}\" x1=\"{:.1f}\" "
            "y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
            "stroke-dasharray=\"4 3\"><title>{}</title></line>\n",
            e.kind, x, top, x, bottom, event_colour(e.kind), escape(e.message));
      }
    for (const auto& c : p.curves) {
      if (c.points->empty())
        continue;
      std::string pts;
      for (const auto& pt : *c.points)
        pts += fmt::format("{:.1f},{:.1f} ", px(x_of(pt.step, pt.t)),
                           py(pt.value));
      pts.pop_back();
      out_ += fmt::format("<polyline class=\"curve\" data-run=\"{}\" "
                          "fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{} "
                          "points=\"{}\"/>\n",
                          c.run, colour_of(c.run),
                          c.dashed ? " stroke-dasharray=\"6 4\"" : "", pts);
      if (c.markers)
        for (const auto& pt : *c.points)
          out_ += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" "
                              "fill=\"{}\"/>\n",
                              px(x_of(pt.step, pt.t)), py(pt.value),
                              colour_of(c.run));
    }
    out_ += "</g>\n";
  }

  void draw_legend(double y0) {
    double x = 30, y = y0 + 16;
    const double col = (o_.width - 60) / 3.0;
    for (std::size_t i = 0; i < runs_.size(); ++i) {
      if (i > 0 && i % 3 == 0) {
        x = 30;
        y += 22;
      }
      const auto& r = runs_[i];
      out_ += fmt::format(
          "<g class=\"legend\"><line x1=\"{0:.1f}\" y1=\"{1:.1f}\" "
          "x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" stroke-width=\"3\"/>"
          "<text x=\"{4:.1f}\" y=\"{5:.1f}\">{6}</text></g>\n",
          x, y, x + 24, colour_of(i), x + 30, y + 4,
          escape(r.label + (r.finished ? "" : " (unfinished)")));
      x += col;
    }
    y += 24;
    x = 30;
    for (const auto& [kind, what] :
         {std::pair<const char*, const char*>{"fault", "fault / failure"},
          {"rollback", "rollback"},
          {"recovered", "recovered"},
          {"early_stop", "early stop / controller"}}) {
      out_ += fmt::format(
          "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" "
          "stroke=\"{3}\" stroke-dasharray=\"4 3\" stroke-width=\"2\"/>"
          "<text x=\"{4:.1f}\" y=\"{5:.1f}\" fill=\"#555\">{6}</text>\n",
          x, y, x + 24, event_colour(kind), x + 30, y + 4, what);
      x += 200;
    }
  }

  const std::vector<run_series>& runs_;
  const plot_options& o_;
  range x_;
  std::string out_;
};

// Writes `path` through a temporary file beside it, renamed when complete.
void replace_file(const std::string& path,
                  const std::function<void(const std::string&)>& write) {
  const std::string tmp = path + ".tmp";
  try {
    write(tmp);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const auto why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw metrics_error(fmt::format("{}: cannot write: {}", path, why));
  }
}

void write_png(const std::string& svg, const plot_options& o,
               const std::string& path) {
  GError* err = nullptr;
  RsvgHandle* h = rsvg_handle_new_from_data(
      reinterpret_cast<const guint8*>(svg.data()), svg.size(), &err);
  if (h == nullptr) {
    std::string why = err != nullptr ? err->message : "unknown error";
    if (err != nullptr)
      g_error_free(err);
    throw metrics_error("cannot render the plot: " + why);
  }
  cairo_surface_t* surface =
      cairo_image_surface_create(CAIRO_FORMAT_ARGB32, o.width, o.height);
  cairo_t* cr = cairo_create(surface);
  RsvgRectangle viewport{0, 0, static_cast<double>(o.width),
                         static_cast<double>(o.height)};
  const bool ok = rsvg_handle_render_document(h, cr, &viewport, &err) != 0;
  std::string why;
  if (!ok) {
    why = err != nullptr ? err->message : "unknown error";
    if (err != nullptr)
      g_error_free(err);
  }
  cairo_destroy(cr);
  g_object_unref(h);
  cairo_status_t st = CAIRO_STATUS_SUCCESS;
  if (ok)
    st = cairo_surface_write_to_png(surface, path.c_str());
  cairo_surface_destroy(surface);
  if (!ok)
    throw metrics_error("cannot render the plot: " + why);
  if (st != CAIRO_STATUS_SUCCESS)
    throw metrics_error(fmt::format("{}: cannot write the PNG: {}", path,
                                    cairo_status_to_string(st)));
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(),
                    [](char a, char b) {
                      return a == std::tolower(static_cast<unsigned char>(b));
                    });
}

} // namespace

bool plot_format_known(const std::string& path) {
  return ends_with(path, ".svg") || ends_with(path, ".png");
}

std::string render_svg(const std::vector<run_series>& runs,
                       const plot_options& options) {
  return svg_writer(runs, options).render();
}

void write_plot(const std::vector<run_series>& runs,
                const plot_options& options, const std::string& path) {
  const bool svg = ends_with(path, ".svg");
  if (!plot_format_known(path))
    throw metrics_error(fmt::format(
        "{}: the plot is written as .svg or .png; name the file so", path));
  const auto text = render_svg(runs, options);
  replace_file(path, [&](const std::string& tmp) {
    if (svg) {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << text;
      out.close();
      if (!out)
        throw metrics_error(
            fmt::format("{}: cannot write: {}", path, std::strerror(errno)));
    } else {
      write_png(text, options, tmp);
    }
  });
}

} // namespace troupe::watch
