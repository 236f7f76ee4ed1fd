#include "app/resolver.hpp"

#include <asio.hpp>
#include <cstring>

namespace fp::app {

std::vector<net::SockAddr> Resolver::dns_lookup(const std::string& host, std::uint16_t port,
                                                std::string& error) {
    asio::io_context io;
    asio::ip::tcp::resolver resolver(io);
    asio::error_code ec;
    const auto results =
        resolver.resolve(host, std::to_string(port), asio::ip::resolver_base::numeric_service, ec);
    std::vector<net::SockAddr> out;
    if (ec) {
        error = ec.message();
        return out;
    }
    for (const auto& r : results) {
        const auto e = r.endpoint();
        net::SockAddr a;
        std::memcpy(&a.ss, e.data(), e.size());
        a.len = socklen_t(e.size());
        bool seen = false;
        for (const auto& b : out)
            seen |= b == a;
        if (!seen) out.push_back(a);
    }
    if (out.empty()) error = "no address";
    return out;
}

std::vector<net::SockAddr> Resolver::resolve(const std::string& host, std::uint16_t port,
                                             std::string& error) {
    std::string why;
    std::vector<net::SockAddr> got = lookup_(host, port, why);
    const std::string key = host + ":" + std::to_string(port);
    std::lock_guard lock(mu_);
    if (!got.empty()) {
        last_[key] = got;
        return got;
    }
    const auto it = last_.find(key);
    if (it == last_.end()) {
        error = why;
        return {};
    }
    std::string kept;
    for (const auto& a : it->second) {
        if (!kept.empty()) kept += ", ";
        kept += a.str();
    }
    notes_.push_back("upstream " + key + " does not resolve (" + why + "): keeps " + kept);
    return it->second;
}

std::vector<std::string> Resolver::take_notes() {
    std::lock_guard lock(mu_);
    return std::exchange(notes_, {});
}

}  // namespace fp::app
