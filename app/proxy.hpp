#pragma once
// Proxy: the workers of one configuration, started together and stopped together.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

#include "app/access_log.hpp"
#include "app/config.hpp"
#include "app/health.hpp"
#include "net/base/fd.hpp"
#include "net/worker/worker.hpp"

namespace fp::app {

class Proxy {
  public:
    // log: the access log the workers hand their records to (null: none); outlives the Proxy.
    explicit Proxy(Config config, AccessLog* log = nullptr);
    ~Proxy();
    // Starts every worker; throws (and stops those already started) if one fails to set up.
    void start();
    // Graceful drain: no new connections or sessions; drained() once what was established ended.
    void drain();
    bool drained() const;
    bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }
    // /healthz: "" while every worker runs its loop; else which one does not, and since when (a
    // worker whose thread ended, or one that has not ticked for kStalledMs: blocked, or starved
    // of CPU).
    static constexpr std::uint64_t kStalledMs = 5000;
    std::string health() const;
    // Milliseconds since worker i last ran its tick.
    std::uint64_t tick_age_ms(std::size_t i) const noexcept;
    const AccessLog* access_log() const noexcept { return log_; }
    // The running configuration (a copy: a reload may replace it meanwhile). Any thread.
    Config config() const;
    // Applies a new configuration to the running workers (TcpRelay::reconfigure: listeners kept,
    // opened, closed; new connections get the new settings, established ones keep theirs).
    // Settings that need a restart (workers, memory, io_uring, admin) stay as running, and the
    // message says so. One reload at a time; any thread. ok=false: nothing or not all applied.
    struct ReloadResult {
        bool ok = false;
        std::string message;
    };
    ReloadResult reload(Config next);
    std::uint64_t reloads(bool ok) const noexcept {
        return (ok ? reloads_ok_ : reloads_failed_).load(std::memory_order_relaxed);
    }
    // A reload that failed before it reached the workers (the file did not parse): counted.
    void reload_failed() noexcept { reloads_failed_.fetch_add(1, std::memory_order_relaxed); }
    const std::vector<std::unique_ptr<net::Worker>>& workers() const noexcept { return workers_; }
    // Every listener address ever configured (name, counters; TCP ones, UDP ones or both) and
    // every upstream address (address, counters), for the metrics. Any thread.
    enum class Protocols { kTcp, kUdp, kAll };
    void for_each_listener(
        const std::function<void(const std::string&, const net::ListenerShared&)>& fn,
        Protocols which = Protocols::kTcp) const;
    void for_each_upstream(
        const std::function<void(const std::string&, const net::UpstreamShared&)>& fn) const;
    // (listener, route, counters) of every route a configuration has had.
    void for_each_route(const std::function<void(const std::string&, const std::string&,
                                                 const net::RouteShared&)>& fn) const;
    void stop();
    // Totals over the workers, and what they still held at exit (pages, fds: both 0 = no leak).
    void report(std::ostream& out) const;
    bool leaked() const;
    // Every counter as one JSON object (--stats-json); at_exit adds what was held at exit.
    std::string stats_json(bool at_exit) const;

  private:
    void choose_receive_path();
    void share_listeners(Config& config);
    net::ListenerShared* share_listener(const std::string& name, const std::string& key, bool udp,
                                        unsigned workers);
    void configure_health(const Config& config);
    template <class Listener>
    void share_upstreams(Listener& l, unsigned workers);
    std::string keep_restart_only(Config& next) const;

    Config config_;
    AccessLog* log_;
    mutable std::mutex config_mu_;  // config_ (the admin thread reads it; a reload writes it)
    std::mutex reload_mu_;          // one reload at a time
    // Listener counters (max_connections, per-worker counters) by address and upstream counters
    // by address, kept across reloads (never freed: a few cache lines per address ever
    // configured). The name is the listener's latest; written under config_mu_.
    struct ListenerEntry {
        std::string name;
        bool udp = false;
        std::unique_ptr<net::ListenerShared> shared;
    };
    std::map<std::string, ListenerEntry> listeners_;
    struct RouteEntry {
        std::string listener, route;  // their latest names
        std::unique_ptr<net::RouteShared> shared;
    };
    std::map<std::string, RouteEntry> routes_;  // by listener address and route name
    std::map<std::string, std::unique_ptr<net::UpstreamShared>> upstreams_;
    std::unique_ptr<HealthChecker> health_;  // once a listener checks (goes before upstreams_)
    std::vector<std::unique_ptr<net::Worker>> workers_;
    // Sockets holding the ports the kernel picked for port-0 listeners until start() has bound
    // every worker's there (listen_socket.hpp: reserve_port).
    std::vector<net::Fd> reserved_;
    std::atomic<bool> draining_{false};
    std::atomic<std::uint64_t> reloads_ok_{0}, reloads_failed_{0};
};

}  // namespace fp::app
