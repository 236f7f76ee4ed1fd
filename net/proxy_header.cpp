#include "net/proxy_header.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

namespace fp::net {
namespace {

constexpr std::uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

std::size_t v1(char* out, const AccessAddr& src, const AccessAddr& dst) {
    if (src.family == 0 || src.family != dst.family) {
        std::memcpy(out, "PROXY UNKNOWN\r\n", 15);
        return 15;
    }
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    ::inet_ntop(src.family, src.addr, s, sizeof s);
    ::inet_ntop(dst.family, dst.addr, d, sizeof d);
    const int n = std::snprintf(out, kProxyHeaderMax, "PROXY %s %s %s %u %u\r\n",
                                src.family == AF_INET ? "TCP4" : "TCP6", s, d, unsigned(src.port),
                                unsigned(dst.port));
    return n > 0 ? std::size_t(n) : 0;
}

std::size_t v2(std::uint8_t* out, const AccessAddr& src, const AccessAddr& dst) {
    std::memcpy(out, kSignature, sizeof kSignature);
    if (src.family == 0 || src.family != dst.family) {
        out[12] = 0x20;  // version 2, LOCAL
        out[13] = 0x00;  // UNSPEC
        out[14] = out[15] = 0;
        return 16;
    }
    const bool v4 = src.family == AF_INET;
    const std::size_t alen = v4 ? 4 : 16;
    const std::uint16_t len = std::uint16_t(2 * alen + 4);
    out[12] = 0x21;              // version 2, PROXY
    out[13] = v4 ? 0x11 : 0x21;  // TCP over IPv4 / IPv6
    out[14] = std::uint8_t(len >> 8);
    out[15] = std::uint8_t(len);
    std::uint8_t* p = out + 16;
    std::memcpy(p, src.addr, alen);
    std::memcpy(p + alen, dst.addr, alen);
    p += 2 * alen;
    p[0] = std::uint8_t(src.port >> 8);
    p[1] = std::uint8_t(src.port);
    p[2] = std::uint8_t(dst.port >> 8);
    p[3] = std::uint8_t(dst.port);
    return 16 + len;
}

}  // namespace

std::size_t write_proxy_header(std::byte* out, int version, const AccessAddr& src,
                               const AccessAddr& dst) noexcept {
    return version == 1 ? v1(reinterpret_cast<char*>(out), src, dst)
                        : v2(reinterpret_cast<std::uint8_t*>(out), src, dst);
}

}  // namespace fp::net
