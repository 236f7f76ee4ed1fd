// The PROXY protocol header send_proxy writes: v1 text and v2 binary, IPv4 and IPv6, byte-exact
// against the specification's layout; UNKNOWN / LOCAL when the client address is unknown.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <string>
#include <vector>

#include "net/wire/proxy_header.hpp"

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

namespace {
ProxyHeader parse(const std::string& s) {
    return parse_proxy_header(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}
std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int x : b)
        s += char(x);
    return s;
}
const std::string kSig =
    bytes({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A});
}  // namespace

TEST_CASE("reading v1: what was written, prefixes, and what is refused") {
    const std::string line = "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n";
    auto h = parse(line + "GET /");
    REQUIRE(h.status == ProxyHeader::Status::kDone);
    CHECK(h.length == line.size());
    CHECK(h.src.port == 56324);
    CHECK(h.dst.port == 443);
    CHECK(h.src.addr[0] == 192);
    for (std::size_t i = 0; i < line.size(); ++i)  // every prefix asks for more
        CHECK(parse(line.substr(0, i)).status == ProxyHeader::Status::kIncomplete);
    CHECK(parse("PROXY TCP6 2001:db8::1 ::1 1 2\r\n").status == ProxyHeader::Status::kDone);
    auto unknown = parse("PROXY UNKNOWN whatever\r\n");
    CHECK(unknown.status == ProxyHeader::Status::kDone);
    CHECK(unknown.local);
    for (const char* bad :
         {"GET / HTTP/1.1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY TCP4 ::1 ::1 1 2\r\n",
          "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
          "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
          "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"})
        CHECK_MESSAGE(parse(bad).status == ProxyHeader::Status::kInvalid, bad);
    CHECK(parse("PROXY TCP4 " + std::string(120, '1')).status == ProxyHeader::Status::kInvalid);
}

TEST_CASE("reading v2: what was written, TLVs, LOCAL, and what is refused") {
    std::byte out[kProxyHeaderMax];
    AccessAddr s = {}, d = {};
    s.family = d.family = AF_INET;
    s.addr[0] = 10;
    s.port = 1234;
    d.port = 443;
    const std::size_t n = write_proxy_header(out, 2, s, d);
    std::string h(reinterpret_cast<const char*>(out), n);
    auto r = parse(h + "payload");
    REQUIRE(r.status == ProxyHeader::Status::kDone);
    CHECK(r.length == n);
    CHECK(r.src.addr[0] == 10);
    CHECK(r.src.port == 1234);
    CHECK(r.dst.port == 443);
    for (std::size_t i = 0; i < n; ++i)
        CHECK(parse(h.substr(0, i)).status == ProxyHeader::Status::kIncomplete);
    // With two TLVs (ALPN "h2", an empty NOOP): the length covers them.
    std::string t = h + bytes({0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00});
    t[15] = char(12 + 8);
    auto withtlv = parse(t);
    REQUIRE(withtlv.status == ProxyHeader::Status::kDone);
    CHECK(withtlv.tlvs == 2);
    std::string truncated = t;
    truncated[15] = char(12 + 7);  // the last TLV no longer fits
    CHECK(parse(truncated).status == ProxyHeader::Status::kInvalid);
    auto local = parse(kSig + bytes({0x20, 0x00, 0x00, 0x00}));
    CHECK(local.status == ProxyHeader::Status::kDone);
    CHECK(local.local);
    CHECK(parse(kSig + bytes({0x11, 0x11, 0, 12})).status == ProxyHeader::Status::kInvalid);  // v1
    CHECK(parse(kSig + bytes({0x22, 0x11, 0, 12})).status == ProxyHeader::Status::kInvalid);  // cmd
    CHECK(parse(kSig + bytes({0x21, 0x41, 0, 12})).status == ProxyHeader::Status::kInvalid);  // fam
    CHECK(parse(kSig + bytes({0x21, 0x21, 0, 12}) + std::string(12, 'x')).status ==
          ProxyHeader::Status::kInvalid);  // TCP6 needs 36 bytes of addresses
    CHECK(parse(kSig + bytes({0x21, 0x11, 0xff, 0xff})).status ==
          ProxyHeader::Status::kInvalid);  // longer than accepted
}

TEST_CASE("v2 TLVs: the CRC32C, the rules per type, and passing them on") {
    const std::string check = "123456789";  // the CRC-32C check value (RFC 3720, B.4)
    CHECK(crc32c(reinterpret_cast<const std::uint8_t*>(check.data()), check.size()) == 0xE3069283u);
    const AccessAddr s = addr("203.0.113.5", 4444), d = addr("192.0.2.9", 443);
    auto write = [&](const std::string& tlvs, bool crc) {
        std::byte out[kProxyHeaderMax + 64 + kCrcTlv];
        REQUIRE(tlvs.size() <= 64);
        const std::size_t n = write_proxy_header(
            out, 2, s, d, {reinterpret_cast<const std::byte*>(tlvs.data()), tlvs.size()}, crc);
        return std::string(reinterpret_cast<const char*>(out), n);
    };
    const std::string alpn = bytes({0x01, 0, 2, 'h', '2'});
    const std::string authority = bytes({0x02, 0, 11}) + "example.com";
    const std::string custom = bytes({0xE0, 0, 3, 'a', 'b', 'c'});

    // Written with a checksum: read back whole, and refused once any byte changes.
    const std::string h = write(alpn + authority + custom, true);
    CHECK(h.size() == 16 + 12 + alpn.size() + authority.size() + custom.size() + kCrcTlv);
    auto r = parse(h);
    REQUIRE(r.status == ProxyHeader::Status::kDone);
    CHECK(r.tlvs == 4);
    CHECK(r.tlv_offset == 28);
    CHECK(r.length == h.size());
    for (std::size_t i : {std::size_t(4), std::size_t(20), std::size_t(30), h.size() - 1}) {
        std::string bad = h;
        bad[i] = char(bad[i] ^ 0x10);
        const auto b = parse(bad);
        CHECK(b.status == ProxyHeader::Status::kInvalid);
    }
    std::string wrong = h;
    wrong[h.size() - 1] = char(wrong[h.size() - 1] ^ 1);  // the checksum itself
    CHECK(std::string(parse(wrong).error) == "v2: its CRC32C does not match");

    // Passing on: the types asked for, in their order, never the CRC32C.
    TlvTypes pass;
    pass.set(pp2::kAuthority).set(0xE0).set(pp2::kCrc32c);
    const auto* raw = reinterpret_cast<const std::uint8_t*>(h.data());
    const std::size_t n = copy_tlvs(raw, r, pass, nullptr);
    CHECK(n == authority.size() + custom.size());
    std::string copied(n, '\0');
    CHECK(copy_tlvs(raw, r, pass, reinterpret_cast<std::byte*>(copied.data())) == n);
    CHECK(copied == authority + custom);
    CHECK(copy_tlvs(raw, r, TlvTypes{}, nullptr) == 0);
    // ... and on the header they go on, a checksum of that header.
    const std::string onward = write(copied, true);
    auto o = parse(onward);
    REQUIRE(o.status == ProxyHeader::Status::kDone);
    CHECK(o.tlvs == 3);
    CHECK(onward.substr(o.tlv_offset, n) == copied);
    // LOCAL carries TLVs too.
    std::byte local[kProxyHeaderMax + 16];
    const std::size_t ln =
        write_proxy_header(local, 2, AccessAddr{}, d,
                           {reinterpret_cast<const std::byte*>(custom.data()), custom.size()});
    auto l = parse(std::string(reinterpret_cast<const char*>(local), ln));
    REQUIRE(l.status == ProxyHeader::Status::kDone);
    CHECK(l.local);
    CHECK(l.tlvs == 1);

    // The rules per type.
    auto with = [&](const std::string& tlvs) { return parse(write(tlvs, false)); };
    CHECK(with(bytes({0x05, 0, 0})).status == ProxyHeader::Status::kDone);
    CHECK(with(bytes({0x05, 0, 60}) + std::string(60, 'u')).status == ProxyHeader::Status::kDone);
    CHECK(with(bytes({0x03, 0, 3, 1, 2, 3})).status == ProxyHeader::Status::kInvalid);
    CHECK(parse(write(bytes({0x03, 0, 4, 0, 0, 0, 0}), true)).status ==  // two checksums
          ProxyHeader::Status::kInvalid);
    const std::string ssl = bytes({0x20, 0, 11, 0x01, 0, 0, 0, 0, 0x21, 0, 3}) + "1.3";
    CHECK(with(ssl).status == ProxyHeader::Status::kDone);
    CHECK(with(bytes({0x20, 0, 4, 1, 0, 0, 0})).status == ProxyHeader::Status::kInvalid);
    std::string ssl_cut = ssl;
    ssl_cut[2] = 10;  // its sub-TLV no longer fits inside it
    ssl_cut.pop_back();
    CHECK(with(ssl_cut).status == ProxyHeader::Status::kInvalid);
}

TEST_CASE("v2 TLVs: a UNIQUE_ID of at most 128 bytes") {
    std::string h = kSig + bytes({0x21, 0x11, 0, 0}) + std::string(12, '\0');
    auto unique = [&](std::size_t len) {
        std::string t = h + bytes({0x05, 0, std::uint8_t(len)}) + std::string(len, 'u');
        t[14] = char((t.size() - 16) >> 8);
        t[15] = char(t.size() - 16);
        return parse(t).status;
    };
    CHECK(unique(128) == ProxyHeader::Status::kDone);
    CHECK(unique(129) == ProxyHeader::Status::kInvalid);
}
