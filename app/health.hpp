#pragma once
// HealthChecker: the active health checks (a listener's health_check: {interval, timeout, rise,
// fall}), on the control plane: its own thread and Asio io_context, never a worker. Each upstream
// address checked by a listener gets a TCP connect every interval, bounded by the timeout;
// `fall` failures in a row take it out (UpstreamShared::up = false; the workers' balancers skip
// it), `rise` passes bring it back. Workers take an upstream out themselves too, after `fall`
// failed client connects in a row (passive checks); only the checks bring it back. Transitions
// are logged once each, and so is a listener losing (or regaining) its last upstream.
#include <asio.hpp>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/policy/settings.hpp"

namespace fp::app {

class HealthChecker {
  public:
    struct Target {
        net::SockAddr addr;
        net::HealthCheck check;       // the first listener's that names the address
        net::UpstreamShared* shared;  // owned by the Proxy, outlives the checker
        std::vector<std::string> listeners;
    };
    HealthChecker();
    ~HealthChecker();
    HealthChecker(const HealthChecker&) = delete;
    HealthChecker& operator=(const HealthChecker&) = delete;

    // The addresses to check from now on (a reload calls it again): new ones start, gone ones
    // stop (and are left up), kept ones go on with their streaks. Any thread.
    // listeners_of: every listener's upstreams, to log when one has none left.
    void configure(std::vector<Target> targets,
                   std::map<std::string, std::vector<net::UpstreamShared*>> listeners_of);

  private:
    struct Probe;
    void note(Probe& p, bool ok, const std::string& why);
    void log_listeners();

    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::map<std::string, std::shared_ptr<Probe>> probes_;  // io_ thread only
    std::map<std::string, std::vector<net::UpstreamShared*>> listeners_of_;
    std::map<std::string, bool> listener_down_;  // logged state, per listener
    std::thread thread_;
};

}  // namespace fp::app
