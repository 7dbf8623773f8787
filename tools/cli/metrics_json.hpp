#pragma once
// The `test_metrics` object of `troupe run --json` and `troupe eval --json`.
#include "actors/run.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace troupe::cli {

/// Classification: accuracy, macro_f1, per_class (class, precision,
/// recall, f1, support; a class never predicted has precision 0, one never
/// present recall 0) and the confusion matrix as rows (true class) of
/// predicted counts. Regression: mae, rmse, r2. Then each [[metric]] by
/// its name.
inline nlohmann::ordered_json
metrics_json(const actors::eval_metrics& m,
             const std::vector<std::string>& labels = {}) {
  using json = nlohmann::ordered_json;
  if (m.classes == 0) {
    json out{{"mae", m.mae}, {"rmse", m.rmse}, {"r2", m.r2}};
    for (const auto& [name, v] : m.custom)
      out[name] = v;
    return out;
  }
  const auto k = m.classes;
  auto at = [&](std::int64_t t, std::int64_t p) {
    return m.confusion[static_cast<std::size_t>(t * k + p)];
  };
  std::int64_t total = 0, right = 0;
  json per_class = json::array(), rows = json::array();
  double f1_sum = 0;
  for (std::int64_t c = 0; c < k; ++c) {
    std::int64_t support = 0, predicted = 0;
    json row = json::array();
    for (std::int64_t o = 0; o < k; ++o) {
      support += at(c, o);
      predicted += at(o, c);
      row.push_back(at(c, o));
    }
    rows.push_back(row);
    total += support;
    right += at(c, c);
    const double tp = static_cast<double>(at(c, c));
    const double precision =
        predicted > 0 ? tp / static_cast<double>(predicted) : 0.0;
    const double recall = support > 0 ? tp / static_cast<double>(support) : 0;
    const double f1 = precision + recall > 0
                          ? 2 * precision * recall / (precision + recall)
                          : 0.0;
    f1_sum += f1;
    json name = static_cast<std::size_t>(c) < labels.size()
                    ? json(labels[static_cast<std::size_t>(c)])
                    : json(c);
    per_class.push_back(json{{"class", name},
                             {"precision", precision},
                             {"recall", recall},
                             {"f1", f1},
                             {"support", support}});
  }
  json out{{"accuracy",
            total > 0 ? static_cast<double>(right) / static_cast<double>(total)
                      : 0.0},
           {"macro_f1", f1_sum / static_cast<double>(k)},
           {"per_class", per_class},
           {"confusion", rows}};
  for (const auto& [name, v] : m.custom)
    out[name] = v; // [[metric]]s, by name
  return out;
}

} // namespace troupe::cli
