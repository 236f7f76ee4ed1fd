#pragma once
// DNS names in upstreams ("backend.internal:443"): resolved on the control plane, at start and by
// each reload on the thread that reloads, never on a worker; with Asio's resolver (getaddrinfo:
// /etc/hosts, then DNS, as nsswitch.conf says). Every address a name resolves to is an upstream
// of its own, with the entry's weight. A name that does not resolve is a config error at start;
// at a reload it keeps the addresses it resolved to last, and a note says so.
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "net/base/address.hpp"

namespace fp::app {

class Resolver {
  public:
    // host, port -> its addresses in the order the system gives them; empty with `error` set
    // when it does not resolve.
    using Lookup = std::function<std::vector<net::SockAddr>(
        const std::string& host, std::uint16_t port, std::string& error)>;
    explicit Resolver(Lookup lookup = dns_lookup) : lookup_(std::move(lookup)) {}

    // The addresses of host:port; when it does not resolve, those of its last resolve (and a
    // note); empty with `error` set when it never resolved.
    std::vector<net::SockAddr> resolve(const std::string& host, std::uint16_t port,
                                       std::string& error);
    std::vector<std::string> take_notes();

    static std::vector<net::SockAddr> dns_lookup(const std::string& host, std::uint16_t port,
                                                 std::string& error);

  private:
    Lookup lookup_;
    std::mutex mu_;  // start, SIGHUP and POST /reload may parse on different threads
    std::map<std::string, std::vector<net::SockAddr>> last_;
    std::vector<std::string> notes_;
};

}  // namespace fp::app
