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
// The largest v2 header accepted (addresses and TLVs); longer ones are refused as invalid.
constexpr std::size_t kProxyV2Max = 16 + 4096;

// Writes the header into out (kProxyHeaderMax bytes of room); returns its length.
std::size_t write_proxy_header(std::byte* out, int version, const AccessAddr& src,
                               const AccessAddr& dst) noexcept;

// Reading one (accept_proxy): strict, as the specification asks. v1: "PROXY TCP4|TCP6 src dst
// sport dport\r\n" within 107 bytes, or "PROXY UNKNOWN...\r\n"; v2: the signature, version 2,
// command LOCAL or PROXY, a known family and protocol, a length within kProxyV2Max, addresses
// that fit it, and TLVs (type, 16-bit length, value) that fill the rest exactly.
struct ProxyHeader {
    enum class Status : std::uint8_t { kIncomplete, kInvalid, kDone };
    Status status = Status::kIncomplete;
    std::size_t length = 0;  // bytes of the header (kDone): what follows is the client's
    int version = 0;
    bool local = false;      // LOCAL, UNKNOWN or a non-IP family: keep the connection's own
    AccessAddr src, dst;     // the client and the address it connected to (unless local)
    std::uint16_t tlvs = 0;  // v2 TLVs, each checked to fit
    const char* error = "";  // why it is invalid
};

// `n` bytes from the start of the connection: done, invalid, or more needed (a prefix of a
// valid header).
ProxyHeader parse_proxy_header(const std::uint8_t* data, std::size_t n) noexcept;

}  // namespace fp::net
