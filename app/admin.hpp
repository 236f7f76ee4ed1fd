#pragma once
// AdminServer: the admin endpoint, HTTP/1.1 on its own thread and Asio io_context (the control
// plane: nothing here runs on, or waits for, a worker). One request per connection:
//   GET /metrics   Prometheus text format 0.0.4 (metrics.hpp)
//   GET /healthz   200 while the workers run
//   GET /ready     200; 503 while draining (SIGTERM), so a load balancer stops sending
//   GET /config    the resolved configuration, as --check prints it
//   POST /reload   re-reads the configuration file, as SIGHUP does: 200 applied, 500 not (the
//                  body says why: the file:line:col of the error, or what failed to apply)
// Unknown paths 404, other methods 405 (with Allow); a request that is not complete within
// kRequestTimeout or larger than kMaxRequest is answered 408/431 and closed.
#include <asio.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "net/base/address.hpp"

namespace fp::app {

class Proxy;

class AdminServer {
  public:
    static constexpr std::size_t kMaxRequest = 8192;
    static constexpr std::chrono::seconds kRequestTimeout{5};

    // Binds and listens now (start-up path: throws std::system_error naming the address); serves
    // from its own thread until destroyed.
    using Reload = std::function<std::pair<bool, std::string>()>;  // ok, message
    AdminServer(const net::SockAddr& addr, const Proxy& proxy, Reload reload);
    ~AdminServer();
    AdminServer(const AdminServer&) = delete;
    AdminServer& operator=(const AdminServer&) = delete;

    // Where it listens ("127.0.0.1:8080", "[::1]:8080"): the kernel's port for port 0.
    std::string address() const;
    // The response to one request head (tests drive it directly too).
    std::string respond(const std::string& head) const;

  private:
    void accept();

    const Proxy& proxy_;
    Reload reload_;
    asio::io_context io_;
    asio::ip::tcp::acceptor acceptor_;
    std::thread thread_;
};

}  // namespace fp::app
