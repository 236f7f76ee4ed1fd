#pragma once
// The UDP GSO batching rule (UDP_SEGMENT): which datagrams may go out together in one sendmsg so
// that the kernel cuts them apart again into the very same datagrams. All segments of a batch
// have the first one's size, but the last, which may be shorter and then ends the batch; at most
// kMaxSegments of them, at most kMaxBytes in all (the batch is one UDP datagram to the stack),
// and each no larger than the path's MTU allows (the kernel refuses larger segments).
#include <cstdint>

namespace fp::net::gso {

inline constexpr unsigned kMaxSegments = 32;
inline constexpr std::uint32_t kMaxBytes = 65507;    // largest UDP payload over IPv4
inline constexpr std::uint32_t kHeaders4 = 20 + 8;   // IPv4 + UDP headers
inline constexpr std::uint32_t kHeaders6 = 40 + 8;   // IPv6 + UDP headers
inline constexpr std::uint32_t kEthernetMtu = 1500;  // when the path's MTU is not known

// Largest datagram to batch on a path of `mtu` bytes (0 or less: not known).
constexpr std::uint16_t max_segment(bool ipv6, int mtu) noexcept {
    const std::uint32_t headers = ipv6 ? kHeaders6 : kHeaders4;
    const std::uint32_t path = mtu > int(headers) ? std::uint32_t(mtu) : kEthernetMtu;
    const std::uint32_t seg = path - headers;
    return std::uint16_t(seg < kMaxBytes ? seg : kMaxBytes);
}

// A datagram that may be batched at all (an empty one is sent alone: GSO cannot carry it).
constexpr bool batchable(std::uint32_t len, std::uint32_t max_seg) noexcept {
    return len > 0 && len <= max_seg;
}

// A batchable datagram of `len` bytes may join a batch of `count` datagrams of `seg` bytes whose
// last one has `last` bytes.
constexpr bool joins(std::uint32_t len, unsigned count, std::uint32_t seg,
                     std::uint32_t last) noexcept {
    return count > 0 && count < kMaxSegments && last == seg && len <= seg &&
           (count + 1) * seg <= kMaxBytes;
}

}  // namespace fp::net::gso
