#pragma once
/// \file A node's structured log (`troupe node --log-file`): one JSON object
/// per line with time, node, job, actor, event and detail, appended and
/// flushed line by line. Without a file nothing is written; stderr keeps
/// its human lines either way.
#include <string>
#include <string_view>

namespace troupe::runtime {

/// Opens `path` for appending as this process's log; lines name `node`.
/// Returns "" or why it cannot be opened.
std::string open_node_log(const std::string& path, std::string node);

/// Renames the node in later lines (its name is known once it listens).
void set_node_log_name(std::string node);

/// One line: {"time": UTC ISO 8601 ms, "node", "job", "actor", "event",
/// "detail"}; empty job/actor/detail are written as null. Thread-safe; a
/// no-op without a log file.
void node_log(std::string_view event, std::string_view job = {},
              std::string_view actor = {}, std::string_view detail = {});

/// Now as UTC, ISO 8601 to the millisecond ("2026-12-01T23:30:14.197Z"):
/// the time of node logs and of metrics files.
std::string utc_timestamp();

/// Closes the log (the end of the process).
void close_node_log();

} // namespace troupe::runtime
