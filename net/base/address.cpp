#include "net/base/address.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace fp::net {

bool SockAddr::unspecified() const noexcept {
    if (family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr);
}

std::uint16_t SockAddr::port() const noexcept {
    return ntohs(family() == AF_INET ? reinterpret_cast<const sockaddr_in*>(&ss)->sin_port
                                     : reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}

void SockAddr::set_port(std::uint16_t port) noexcept {
    if (family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
    else
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
}

std::optional<SockAddr> parse_address(std::string_view text, std::string* why, bool any_port) {
    auto fail = [&](const char* reason) -> std::optional<SockAddr> {
        if (why) *why = reason;
        return std::nullopt;
    };
    std::string host;
    std::string_view port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return fail("expected [IPv6]:port");
        host = std::string(text.substr(1, close - 1));
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos) return fail("expected host:port");
        host = std::string(text.substr(0, colon));
        port = text.substr(colon + 1);
        if (host.find(':') != std::string::npos) return fail("IPv6 addresses need [brackets]:port");
    }
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || (p == 0 && !any_port) || p > 65535)
        return fail(any_port ? "port must be 0..65535 (0: the kernel picks one)"
                             : "port must be 1..65535");
    SockAddr a;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(static_cast<uint16_t>(p));
        a.len = sizeof(sockaddr_in);
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(static_cast<uint16_t>(p));
        a.len = sizeof(sockaddr_in6);
    } else {
        return fail("not a numeric IPv4 or IPv6 address");
    }
    return a;
}

std::string SockAddr::str() const {
    char buf[INET6_ADDRSTRLEN] = "?";
    if (family() == AF_INET) {
        auto* v4 = reinterpret_cast<const sockaddr_in*>(&ss);
        ::inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
        return std::string(buf) + ":" + std::to_string(ntohs(v4->sin_port));
    }
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(v6->sin6_port));
}

bool SockAddr::operator==(const SockAddr& o) const noexcept {
    return len == o.len && std::memcmp(&ss, &o.ss, len) == 0;
}

}  // namespace fp::net
