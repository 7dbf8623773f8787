#include "data/dataset.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace troupe::data {

namespace {

struct cell {
  std::string_view text;
  std::size_t column = 0; // 1-based character column where the cell starts
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::vector<cell> split(std::string_view line) {
  std::vector<cell> out;
  std::size_t start = 0;
  for (;;) {
    auto pos = line.find(',', start);
    auto piece = line.substr(start, pos == std::string_view::npos
                                        ? std::string_view::npos
                                        : pos - start);
    auto t = trim(piece);
    // Quoted cells only matter for headers; numbers are never quoted.
    if (t.size() >= 2 && t.front() == '"' && t.back() == '"')
      t = t.substr(1, t.size() - 2);
    out.push_back(
        {t, start + 1 + static_cast<std::size_t>(t.data() - piece.data())});
    if (pos == std::string_view::npos)
      break;
    start = pos + 1;
  }
  return out;
}

bool parse_number(std::string_view s, double& out) {
  if (s.empty())
    return false;
  if (s.front() == '+')
    s.remove_prefix(1);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size() && std::isfinite(out);
}

} // namespace

namespace {

// The longest line read (a million-column CSV is not a training set; a
// device or binary file has no newlines): a named error instead of a line
// that grows without end.
constexpr std::size_t max_line_bytes = std::size_t{1} << 20;

bool read_line(std::istream& in, std::string& line, const std::string& path,
               std::size_t line_no) {
  line.clear();
  auto* buf = in.rdbuf();
  for (;;) {
    const auto c = buf->sbumpc();
    if (c == std::char_traits<char>::eof())
      return !line.empty();
    if (c == '\n')
      return true;
    if (line.size() >= max_line_bytes)
      throw data_error(fmt::format(
          "{}:{}: a line longer than {} bytes: not a CSV text file?", path,
          line_no, max_line_bytes));
    line.push_back(static_cast<char>(c));
  }
}

// Where a target cell was, for messages about its label.
struct cell_at {
  std::size_t file = 0;
  std::size_t line = 0;
  std::size_t column = 0;
};

// no_target: every column is a feature (prediction input).
dataset read_csv_impl(const std::vector<std::string>& files,
                      const std::string& target, std::int64_t classes,
                      const std::vector<std::string>& given_labels,
                      bool no_target) {
  if (files.empty())
    throw data_error("data: no CSV file given");
  std::vector<float> xs;
  std::vector<float> ys;
  // Text labels: the target cells as written; where each target cell is.
  bool text_labels = false;
  std::vector<std::string> texts;
  std::vector<cell_at> text_at;
  std::int64_t columns = -1;
  std::int64_t target_col = -1;
  std::vector<std::string> header;
  std::int64_t rows = 0;
  for (std::size_t file_index = 0; file_index < files.size(); ++file_index) {
    const auto& path = files[file_index];
    std::ifstream in(path);
    if (!in)
      throw data_error(
          fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    std::string line;
    std::size_t line_no = 0;
    bool first = true;
    while (read_line(in, line, path, line_no + 1)) {
      ++line_no;
      // A byte-order mark (UTF-8 files from some editors) is not data.
      if (line_no == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0)
        line.erase(0, 3);
      if (trim(line).empty())
        continue;
      auto cells = split(line);
      if (cells.size() == 1)
        for (const auto& [sep, name] :
             {std::pair{';', "semicolons"}, std::pair{'\t', "tabs"},
              std::pair{'|', "'|'"}})
          if (line.find(sep) != std::string::npos)
            throw data_error(fmt::format(
                "{}:{}: one column: troupe reads comma-separated values, and "
                "this line is separated by {}; convert the file to commas",
                path, line_no, name));
      if (first) {
        first = false;
        // A header row has a non-numeric cell outside the target column
        // (which may hold class names); a target given by name needs one.
        double dummy = 0;
        std::int64_t label_col = static_cast<std::int64_t>(cells.size()) - 1;
        bool by_name = false;
        if (!target.empty()) {
          std::int64_t idx = -1;
          auto [p, ec] = std::from_chars(target.data(),
                                         target.data() + target.size(), idx);
          by_name = ec != std::errc{} || p != target.data() + target.size();
          label_col = by_name ? -1 : idx;
        }
        bool numeric = true;
        for (std::size_t c = 0; c < cells.size(); ++c) {
          if (static_cast<std::int64_t>(c) == label_col)
            continue;
          numeric = numeric && parse_number(cells[c].text, dummy);
          if (by_name && cells[c].text == target)
            numeric = false;
        }
        if (!numeric) { // a header row
          std::vector<std::string> names;
          for (const auto& c : cells)
            names.emplace_back(c.text);
          if (!header.empty() && names != header)
            throw data_error(fmt::format(
                "{}:{}: header differs from the first file's header", path,
                line_no));
          header = std::move(names);
          if (columns < 0)
            columns = static_cast<std::int64_t>(header.size());
          else if (columns != static_cast<std::int64_t>(header.size()))
            throw data_error(fmt::format("{}:{}: {} columns, expected {}", path,
                                         line_no, header.size(), columns));
          continue;
        }
      }
      if (columns < 0)
        columns = static_cast<std::int64_t>(cells.size());
      if (static_cast<std::int64_t>(cells.size()) != columns)
        throw data_error(fmt::format("{}:{}: {} columns, expected {}", path,
                                     line_no, cells.size(), columns));
      if (target_col < 0 && (!no_target || !target.empty())) {
        if (columns < 2)
          throw data_error(fmt::format(
              "{}: needs at least two columns (features and a target)", path));
        if (target.empty()) {
          target_col = columns - 1;
        } else {
          auto it = std::find(header.begin(), header.end(), target);
          if (it != header.end()) {
            target_col = it - header.begin();
          } else {
            std::int64_t idx = -1;
            auto [p, ec] = std::from_chars(target.data(),
                                           target.data() + target.size(), idx);
            if (ec != std::errc{} || p != target.data() + target.size())
              throw data_error(fmt::format(
                  "{}: data.target = \"{}\" is neither a column name in the "
                  "header nor a column index",
                  path, target));
            if (idx < 0 || idx >= columns)
              throw data_error(fmt::format(
                  "{}: data.target = {} is out of range: the file has {} "
                  "columns (0..{})",
                  path, idx, columns, columns - 1));
            target_col = idx;
          }
        }
      }
      for (std::int64_t c = 0; c < columns; ++c) {
        const auto& ce = cells[static_cast<std::size_t>(c)];
        double v = 0;
        const bool number = parse_number(ce.text, v);
        if (c == target_col && no_target)
          continue; // a target column beside the features: left out
        if (c == target_col) {
          text_at.push_back({file_index, line_no, ce.column});
          // A class label may be text ("cat"), when this is classification
          // (data.classes not 0); every target cell is then a name.
          if (!number && classes != 0 && !text_labels) {
            text_labels = true;
            for (std::size_t r = 0; r < ys.size(); ++r)
              texts.push_back(fmt::format("{}", ys[r]));
          }
          if (text_labels) {
            texts.emplace_back(ce.text);
            continue;
          }
          if (!number)
            throw data_error(fmt::format(
                "{}:{}:{}: target \"{}\" is not a finite number (a "
                "regression target must be; class names need loss = "
                "\"cross_entropy\")",
                path, line_no, ce.column, ce.text));
          if (classes > 0) {
            if (v != std::floor(v) || v < 0 ||
                v >= static_cast<double>(classes))
              throw data_error(fmt::format(
                  "{}:{}:{}: class label \"{}\" is not an integer in [0, {})",
                  path, line_no, ce.column, ce.text, classes));
          }
          ys.push_back(static_cast<float>(v));
        } else {
          if (!number)
            throw data_error(
                fmt::format("{}:{}:{}: cell \"{}\" is not a finite number",
                            path, line_no, ce.column, ce.text));
          xs.push_back(static_cast<float>(v));
        }
      }
      ++rows;
    }
    if (in.bad())
      throw data_error(fmt::format("{}: read error", path));
  }
  if (rows == 0)
    throw data_error(fmt::format("{}: no data rows", files.front()));
  dataset ds;
  if (text_labels) {
    // Class indices in sorted order of the names, or by the names given
    // (the training set's, for a test set or prediction).
    auto labels = given_labels;
    if (labels.empty()) {
      labels = texts;
      std::sort(labels.begin(), labels.end());
      labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
    }
    if (classes > 0 && static_cast<std::int64_t>(labels.size()) > classes)
      throw data_error(
          fmt::format("{}: {} distinct class labels but data.classes = {}",
                      files.front(), labels.size(), classes));
    ys.clear();
    for (std::size_t r = 0; r < texts.size(); ++r) {
      const auto it = std::lower_bound(labels.begin(), labels.end(), texts[r]);
      const bool sorted = std::is_sorted(labels.begin(), labels.end());
      auto found =
          sorted ? (it != labels.end() && *it == texts[r] ? it : labels.end())
                 : std::find(labels.begin(), labels.end(), texts[r]);
      if (found == labels.end()) {
        const auto& at = text_at[r];
        throw data_error(fmt::format(
            "{}:{}:{}: class label \"{}\" is not one of the training data's "
            "{} labels",
            files[at.file], at.line, at.column, texts[r], labels.size()));
      }
      ys.push_back(static_cast<float>(found - labels.begin()));
    }
    if (classes <= 0)
      classes = static_cast<std::int64_t>(labels.size());
    ds.labels = std::move(labels);
  }
  ds.samples = rows;
  ds.features = columns - (target_col >= 0 ? 1 : 0);
  ds.sample_shape = {ds.features};
  ds.x = devices::tensor::from({rows, ds.features}, xs);
  ds.classes = classes > 0 ? classes : 0;
  ds.targets = no_target ? 0 : 1;
  if (!no_target)
    ds.y = ds.classes > 0 ? devices::tensor::from({rows}, ys)
                          : devices::tensor::from({rows, 1}, ys);
  ds.description =
      fmt::format("{}{} ({} x {}, {})", files.front(),
                  files.size() > 1 ? " + more" : "", rows, ds.features,
                  ds.classes > 0 ? fmt::format("{} classes", ds.classes)
                                 : std::string("regression"));
  return ds;
}

} // namespace

dataset read_csv(const std::vector<std::string>& files,
                 const std::string& target, std::int64_t classes,
                 const std::vector<std::string>& labels) {
  return read_csv_impl(files, target, classes, labels, false);
}

dataset read_csv_features(const std::vector<std::string>& files,
                          const std::string& skip) {
  return read_csv_impl(files, skip, 0, {}, true);
}

} // namespace troupe::data
