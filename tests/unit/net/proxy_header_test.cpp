// The PROXY protocol header send_proxy writes: v1 text and v2 binary, IPv4 and IPv6, byte-exact
// against the specification's layout; UNKNOWN / LOCAL when the client address is unknown.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <string>
#include <vector>

#include "net/proxy_header.hpp"

using namespace fp::net;

namespace {
AccessAddr addr(const char* ip, std::uint16_t port) {
    AccessAddr a;
    a.port = port;
    if (::inet_pton(AF_INET, ip, a.addr) == 1) {
        a.family = AF_INET;
    } else {
        REQUIRE(::inet_pton(AF_INET6, ip, a.addr) == 1);
        a.family = AF_INET6;
    }
    return a;
}
std::string header(int version, const AccessAddr& s, const AccessAddr& d) {
    std::byte out[kProxyHeaderMax];
    const std::size_t n = write_proxy_header(out, version, s, d);
    return {reinterpret_cast<const char*>(out), n};
}
}  // namespace

TEST_CASE("v1") {
    CHECK(header(1, addr("192.0.2.1", 56324), addr("198.51.100.1", 443)) ==
          "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n");
    CHECK(header(1, addr("2001:db8::1", 1), addr("::1", 65535)) ==
          "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
    CHECK(header(1, AccessAddr{}, addr("::1", 1)) == "PROXY UNKNOWN\r\n");
    const std::string longest = header(1, addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                                       addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535));
    CHECK(longest.size() == 104);  // within the specification's 107
}

TEST_CASE("v2") {
    const std::string h = header(2, addr("192.0.2.1", 0x1234), addr("198.51.100.1", 443));
    const std::vector<unsigned char> want = {
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,  // signature
        0x21, 0x11, 0x00, 0x0C,                                                  // PROXY TCP4 12
        192,  0,    2,    1,    198,  51,   100,  1,                             // addresses
        0x12, 0x34, 0x01, 0xBB};                                                 // ports
    CHECK(std::vector<unsigned char>(h.begin(), h.end()) == want);
    const std::string h6 = header(2, addr("2001:db8::1", 1), addr("::1", 2));
    CHECK(h6.size() == 16 + 36);
    CHECK(static_cast<unsigned char>(h6[13]) == 0x21);  // TCP over IPv6
    CHECK(static_cast<unsigned char>(h6[15]) == 36);
    const std::string local = header(2, AccessAddr{}, AccessAddr{});
    CHECK(local.size() == 16);
    CHECK(static_cast<unsigned char>(local[12]) == 0x20);  // LOCAL
}
