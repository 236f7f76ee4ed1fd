#pragma once
// Proxy: the workers of one configuration, started together and stopped together.
#include <atomic>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "net/worker.hpp"

namespace fp::app {

class Proxy {
  public:
    explicit Proxy(const Config& config);
    ~Proxy();
    // Starts every worker; throws (and stops those already started) if one fails to set up.
    void start();
    // Graceful drain: no new connections or sessions; drained() once what was established ended.
    void drain();
    bool drained() const;
    bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }
    const Config& config() const noexcept { return config_; }
    const std::vector<std::unique_ptr<net::Worker>>& workers() const noexcept { return workers_; }
    void stop();
    // Totals over the workers, and what they still held at exit (pages, fds: both 0 = no leak).
    void report(std::ostream& out) const;
    bool leaked() const;
    // Every counter as one JSON object (--stats-json); at_exit adds what was held at exit.
    std::string stats_json(bool at_exit) const;

  private:
    void choose_receive_path();

    Config config_;
    std::vector<net::ListenerShared> shared_;
    std::vector<std::unique_ptr<net::Worker>> workers_;
    std::atomic<bool> draining_{false};
};

}  // namespace fp::app
