#pragma once
// The Prometheus text exposition (format 0.0.4) of a running proxy: every worker's counters,
// labelled by worker, read with relaxed loads from the admin thread (the workers keep plain
// per-worker counters, written by their owner only; nothing on their path waits for a reader).
#include <string>

namespace fp::app {

class Proxy;

std::string render_metrics(const Proxy& proxy);
// The per-worker stats' families as a Markdown table (fragproxy --list-metrics; the README's
// table is this, checked by a test).
std::string stats_table();
std::string stats_list_json();  // every stat of the lists (fragproxy --list-metrics=json)

}  // namespace fp::app
