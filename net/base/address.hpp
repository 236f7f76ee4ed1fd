#pragma once
// SockAddr: an IPv4 or IPv6 socket address, parsed from "host:port" or "[v6]:port" (numeric only:
// a proxy's config names addresses, and resolving names at startup would hide DNS failures).
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fp::net {

struct SockAddr {
    sockaddr_storage ss{};
    socklen_t len = 0;

    int family() const noexcept { return ss.ss_family; }
    const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&ss); }
    std::string str() const;
    bool operator==(const SockAddr& o) const noexcept;
    bool unspecified() const noexcept;  // 0.0.0.0 or ::
    std::uint16_t port() const noexcept;
    void set_port(std::uint16_t port) noexcept;
};

// Null with a reason in *why when the text is not a numeric address with a port. any_port: port
// 0 is taken too (a listen address: the kernel picks the port).
std::optional<SockAddr> parse_address(std::string_view text, std::string* why = nullptr,
                                      bool any_port = false);

}  // namespace fp::net
