#pragma once
// The PROXY protocol header (HAProxy's specification, versions 1 and 2) that `send_proxy:` puts
// in front of a connection's bytes to its upstream, carrying the client's address and the
// address it connected to:
//   v1  "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" (text, at most 107 bytes)
//   v2  the 12-byte signature, version 2 / command PROXY, TCP over IPv4 or IPv6, the length,
//       then source and destination addresses and ports (binary, 28 or 52 bytes)
// A client whose address is unknown (or whose two addresses differ in family) gets "PROXY
// UNKNOWN\r\n" (v1) or the LOCAL command (v2): the upstream then uses the connection's own.
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <span>

#include "net/base/access_record.hpp"

namespace fp::net {

constexpr std::size_t kProxyHeaderMax = 108;  // without TLVs
// The largest v2 header accepted (addresses and TLVs); longer ones are refused as invalid.
constexpr std::size_t kProxyV2Max = 16 + 4096;
constexpr std::size_t kCrcTlv = 7;  // a CRC32C TLV: type, length 4, the checksum

// v2 TLV types (the specification's PP2_TYPE_*); 0xE0-0xEF are for applications, 0xF0-0xF7
// experimental.
namespace pp2 {
constexpr std::uint8_t kAlpn = 0x01, kAuthority = 0x02, kCrc32c = 0x03, kNoop = 0x04,
                       kUniqueId = 0x05, kSsl = 0x20, kNetns = 0x30;
}
using TlvTypes = std::bitset<256>;

// Writes the header into out; returns its length. Room: kProxyHeaderMax, and for v2 also
// tlvs.size() (TLVs passed on, appended as they are) and kCrcTlv when crc32c is asked (a CRC32C
// TLV last, over the whole header).
std::size_t write_proxy_header(std::byte* out, int version, const AccessAddr& src,
                               const AccessAddr& dst, std::span<const std::byte> tlvs = {},
                               bool crc32c = false) noexcept;

// CRC-32C (Castagnoli, reflected 0x82F63B78), as the CRC32C TLV carries it.
std::uint32_t crc32c(const std::uint8_t* data, std::size_t n) noexcept;

// Reading one (accept_proxy): strict, as the specification asks. v1: "PROXY TCP4|TCP6 src dst
// sport dport\r\n" within 107 bytes, or "PROXY UNKNOWN...\r\n"; v2: the signature, version 2,
// command LOCAL or PROXY, a known family and protocol, a length within kProxyV2Max, addresses
// that fit it, and TLVs (type, 16-bit length, value) that fill the rest exactly: a CRC32C TLV
// has 4 bytes, appears once and matches the header (else invalid), UNIQUE_ID has at most 128
// bytes, SSL's client flags, verify result and sub-TLVs fill it exactly.
struct ProxyHeader {
    enum class Status : std::uint8_t { kIncomplete, kInvalid, kDone };
    Status status = Status::kIncomplete;
    std::size_t length = 0;  // bytes of the header (kDone): what follows is the client's
    int version = 0;
    bool local = false;            // LOCAL, UNKNOWN or a non-IP family: keep the connection's own
    AccessAddr src, dst;           // the client and the address it connected to (unless local)
    std::uint16_t tlvs = 0;        // v2 TLVs, each checked to fit
    std::uint16_t tlv_offset = 0;  // where they start (v2); they run to `length`
    const char* error = "";        // why it is invalid
};

// `n` bytes from the start of the connection: done, invalid, or more needed (a prefix of a
// valid header).
ProxyHeader parse_proxy_header(const std::uint8_t* data, std::size_t n) noexcept;

// The TLVs of a parsed v2 header (data: its bytes) whose type is in `pass`, never its CRC32C
// (a checksum of this header, not of the one they go on in), copied into out (room:
// h.length - h.tlv_offset); returns the bytes copied. With out null, only counts them.
std::size_t copy_tlvs(const std::uint8_t* data, const ProxyHeader& h, const TlvTypes& pass,
                      std::byte* out) noexcept;

}  // namespace fp::net
