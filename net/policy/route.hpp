#pragma once
// routes: TLS passthrough by server name. A listener with routes reads each client's ClientHello
// (net/wire/client_hello.hpp) before it picks an upstream, and the route its server name matches
// says among which upstreams: each route is a run of the listener's upstream list, balanced by
// the listener's `balance:` on its own. Matching as nginx's server_name does: an exact name
// first, then the longest wildcard ("*.example.com": any name ending in ".example.com", at any
// depth, not "example.com" itself), then the default route. No match and no default: the
// connection is closed.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "alloc/counter.hpp"
#include "net/policy/balance.hpp"

namespace fp::net {

// A route's counters, per worker (each writes its own line), kept across reloads by its
// listener's address and its name. App-owned, like the listeners' and upstreams'.
struct alignas(64) RouteCounters {
    Counter connections;  // clients sent down this route
};
struct RouteShared {
    explicit RouteShared(unsigned workers)
        : per_worker(std::make_unique<RouteCounters[]>(workers)) {}
    std::unique_ptr<RouteCounters[]> per_worker;
};

struct Route {
    std::string name;                   // name:, else its first server name, or "default" (metrics)
    std::vector<std::string> names;     // exact, lower case
    std::vector<std::string> suffixes;  // "*.example.com" kept as ".example.com"
    bool fallback = false;              // default: true
    std::uint16_t first = 0, count = 0;         // its upstreams in the listener's list
    std::shared_ptr<const MaglevTable> maglev;  // balance: source_hash, over its upstreams
    RouteShared* shared = nullptr;              // set by the app layer
};

struct Routing {
    std::vector<Route> routes;                // empty: no routing (the listener's whole list)
    std::chrono::milliseconds timeout{5000};  // client_hello_timeout, from the accept
    bool enabled() const noexcept { return !routes.empty(); }
    // The route for a server name (lower case; empty when the client sent none); -1: none.
    int match(std::string_view name) const noexcept;
    int fallback() const noexcept;
};

}  // namespace fp::net
