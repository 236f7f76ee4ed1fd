#pragma once
// The PROXY protocol header (HAProxy's specification, versions 1 and 2) that `send_proxy:` puts
// in front of a connection's bytes to its upstream, carrying the client's address and the
// address it connected to:
//   v1  "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" (text, at most 107 bytes)
//   v2  the 12-byte signature, version 2 / command PROXY, TCP over IPv4 or IPv6, the length,
//       then source and destination addresses and ports (binary, 28 or 52 bytes)
// A client whose address is unknown (or whose two addresses differ in family) gets "PROXY
// UNKNOWN\r\n" (v1) or the LOCAL command (v2): the upstream then uses the connection's own.
#include <cstddef>
#include <cstdint>

#include "net/access_record.hpp"

namespace fp::net {

constexpr std::size_t kProxyHeaderMax = 108;

// Writes the header into out (kProxyHeaderMax bytes of room); returns its length.
std::size_t write_proxy_header(std::byte* out, int version, const AccessAddr& src,
                               const AccessAddr& dst) noexcept;

}  // namespace fp::net
