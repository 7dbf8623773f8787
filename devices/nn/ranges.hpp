#pragma once
/// \file Which element ranges of a flattened vector are present: parameters
/// that have arrived, gradients that are final.
#include <cstdint>
#include <iterator>
#include <map>

namespace troupe::devices::nn {

/// A set of elements kept as disjoint, non-adjacent [begin, end) ranges.
class range_set {
public:
  /// Adds [begin, end), merging with what touches it.
  void add(std::int64_t begin, std::int64_t end) {
    if (begin >= end)
      return;
    auto it = ranges_.upper_bound(begin);
    if (it != ranges_.begin() && std::prev(it)->second >= begin) {
      --it;
      begin = it->first;
    }
    while (it != ranges_.end() && it->first <= end) {
      if (it->second > end)
        end = it->second;
      count_ -= it->second - it->first;
      it = ranges_.erase(it);
    }
    ranges_.emplace(begin, end);
    count_ += end - begin;
  }

  /// True when every element of [begin, end) is in the set.
  bool covers(std::int64_t begin, std::int64_t end) const {
    if (begin >= end)
      return true;
    auto it = ranges_.upper_bound(begin);
    if (it == ranges_.begin())
      return false;
    --it;
    return it->second >= end;
  }

  /// True when some element of [begin, end) is in the set.
  bool intersects(std::int64_t begin, std::int64_t end) const {
    auto it = ranges_.lower_bound(end);
    if (it == ranges_.begin())
      return false;
    --it;
    return it->second > begin;
  }

  /// Elements in the set.
  std::int64_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  void clear() {
    ranges_.clear();
    count_ = 0;
  }

private:
  std::map<std::int64_t, std::int64_t> ranges_; // begin -> end
  std::int64_t count_ = 0;
};

} // namespace troupe::devices::nn
