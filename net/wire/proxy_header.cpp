#include "net/wire/proxy_header.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace fp::net {
namespace {

constexpr std::uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

std::size_t v1(char* out, const AccessAddr& src, const AccessAddr& dst) {
    if (src.family == 0 || src.family != dst.family) {
        constexpr std::string_view kUnknown = "PROXY UNKNOWN\r\n";
        std::memcpy(out, kUnknown.data(), kUnknown.size());
        return kUnknown.size();
    }
    char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
    ::inet_ntop(src.family, src.addr, s, sizeof s);
    ::inet_ntop(dst.family, dst.addr, d, sizeof d);
    const int n = std::snprintf(out, kProxyHeaderMax, "PROXY %s %s %s %u %u\r\n",
                                src.family == AF_INET ? "TCP4" : "TCP6", s, d, unsigned(src.port),
                                unsigned(dst.port));
    return n > 0 ? std::size_t(n) : 0;
}

std::size_t v2(std::uint8_t* out, const AccessAddr& src, const AccessAddr& dst,
               std::span<const std::byte> tlvs, bool crc) {
    std::memcpy(out, kSignature, sizeof kSignature);
    std::uint8_t* p = out + 16;
    if (src.family == 0 || src.family != dst.family) {
        out[12] = 0x20;  // version 2, LOCAL
        out[13] = 0x00;  // UNSPEC
    } else {
        const bool v4 = src.family == AF_INET;
        const std::size_t alen = v4 ? 4 : 16;
        out[12] = 0x21;              // version 2, PROXY
        out[13] = v4 ? 0x11 : 0x21;  // TCP over IPv4 / IPv6
        std::memcpy(p, src.addr, alen);
        std::memcpy(p + alen, dst.addr, alen);
        p += 2 * alen;
        p[0] = std::uint8_t(src.port >> 8);
        p[1] = std::uint8_t(src.port);
        p[2] = std::uint8_t(dst.port >> 8);
        p[3] = std::uint8_t(dst.port);
        p += 4;
    }
    if (!tlvs.empty()) std::memcpy(p, tlvs.data(), tlvs.size());
    p += tlvs.size();
    std::uint8_t* checksum = nullptr;
    if (crc) {
        p[0] = pp2::kCrc32c;
        p[1] = 0;
        p[2] = 4;
        checksum = p + 3;
        std::memset(checksum, 0, 4);  // zero while it is computed
        p += kCrcTlv;
    }
    const std::size_t total = std::size_t(p - out);
    out[14] = std::uint8_t((total - 16) >> 8);
    out[15] = std::uint8_t(total - 16);
    if (checksum) {
        const std::uint32_t c = crc32c(out, total);
        checksum[0] = std::uint8_t(c >> 24);  // network order
        checksum[1] = std::uint8_t(c >> 16);
        checksum[2] = std::uint8_t(c >> 8);
        checksum[3] = std::uint8_t(c);
    }
    return total;
}

// The reflected CRC-32C table, made at compile time.
constexpr auto kCrcTable = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[i] = c;
    }
    return t;
}();

std::uint32_t crc_update(std::uint32_t crc, const std::uint8_t* data, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
        crc = kCrcTable[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

}  // namespace

std::uint32_t crc32c(const std::uint8_t* data, std::size_t n) noexcept {
    return ~crc_update(~0u, data, n);
}

std::size_t write_proxy_header(std::byte* out, int version, const AccessAddr& src,
                               const AccessAddr& dst, std::span<const std::byte> tlvs,
                               bool crc) noexcept {
    return version == 1 ? v1(reinterpret_cast<char*>(out), src, dst)
                        : v2(reinterpret_cast<std::uint8_t*>(out), src, dst, tlvs, crc);
}

namespace {

ProxyHeader invalid(const char* why) {
    ProxyHeader h;
    h.status = ProxyHeader::Status::kInvalid;
    h.error = why;
    return h;
}

bool is_prefix(const std::uint8_t* data, std::size_t n, const void* of, std::size_t len) {
    return std::memcmp(data, of, n < len ? n : len) == 0;
}

// A decimal port: 1 to 5 digits, no sign, at most 65535.
bool parse_port(const char* s, std::size_t len, std::uint16_t& out) {
    if (len == 0 || len > 5) return false;
    unsigned v = 0;
    for (std::size_t i = 0; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + unsigned(s[i] - '0');
    }
    if (v > 65535) return false;
    out = std::uint16_t(v);
    return true;
}

ProxyHeader parse_v1(const std::uint8_t* data, std::size_t n) {
    constexpr std::size_t kMax = 107;
    const auto* text = reinterpret_cast<const char*>(data);
    const void* crlf = nullptr;
    const std::size_t scan = n < kMax ? n : kMax;
    for (std::size_t i = 0; i + 1 < scan; ++i)
        if (text[i] == '\r' && text[i + 1] == '\n') {
            crlf = text + i;
            break;
        }
    const std::size_t line = crlf ? std::size_t(static_cast<const char*>(crlf) - text) : scan;
    for (std::size_t i = 0; i < line; ++i)  // printable ASCII only (a lone CR may end a prefix)
        if ((text[i] < 0x20 || text[i] > 0x7e) && !(!crlf && i + 1 == n && text[i] == '\r'))
            return invalid("v1: a byte that is not printable ASCII");
    if (!crlf) {
        if (n < kMax) return ProxyHeader{};  // no CR LF yet: more
        return invalid("v1: no CR LF within 107 bytes");
    }
    ProxyHeader h;
    h.version = 1;
    h.length = line + 2;
    // Fields separated by single spaces.
    char buf[kMax + 1];
    std::memcpy(buf, text, line);
    buf[line] = '\0';
    const char* field[6];
    std::size_t len[6], count = 0, start = 0;
    for (std::size_t i = 0; i <= line; ++i) {
        if (i < line && buf[i] != ' ') continue;
        if (count == 6) return invalid("v1: too many fields");
        field[count] = buf + start;
        len[count++] = i - start;
        if (i < line) buf[i] = '\0';
        start = i + 1;
    }
    if (count < 2 || std::strcmp(field[0], "PROXY") != 0) return invalid("v1: not PROXY");
    if (std::strcmp(field[1], "UNKNOWN") == 0) {  // whatever follows is ignored
        h.local = true;
        h.status = ProxyHeader::Status::kDone;
        return h;
    }
    const bool v4 = std::strcmp(field[1], "TCP4") == 0;
    if (!v4 && std::strcmp(field[1], "TCP6") != 0) return invalid("v1: protocol not TCP4/TCP6");
    if (count != 6) return invalid("v1: needs source, destination and both ports");
    for (std::size_t i = 2; i < 6; ++i)
        if (len[i] == 0) return invalid("v1: an empty field");
    const int fam = v4 ? AF_INET : AF_INET6;
    if (::inet_pton(fam, field[2], h.src.addr) != 1 || ::inet_pton(fam, field[3], h.dst.addr) != 1)
        return invalid("v1: an address that is not of the protocol's family");
    if (!parse_port(field[4], len[4], h.src.port) || !parse_port(field[5], len[5], h.dst.port))
        return invalid("v1: a port that is not 0..65535");
    h.src.family = h.dst.family = std::uint8_t(fam);
    h.status = ProxyHeader::Status::kDone;
    return h;
}

// TLVs (type, 16-bit length, value) within [from, to): each fits, and they fill it exactly.
// Calls f(offset, type, value length) for each; stops at f's first error. Null: all well.
template <class F>
const char* each_tlv(const std::uint8_t* data, std::size_t from, std::size_t to, F&& f) {
    for (std::size_t off = from; off < to;) {
        if (to - off < 3) return "v2: a truncated TLV";
        const std::size_t vlen = std::size_t(data[off + 1]) << 8 | data[off + 2];
        if (to - off - 3 < vlen) return "v2: a TLV longer than what holds it";
        if (const char* why = f(off, data[off], vlen)) return why;
        off += 3 + vlen;
    }
    return nullptr;
}

const char* check_tlvs(const std::uint8_t* data, ProxyHeader& h) {
    std::size_t crc_at = 0;
    const char* why = each_tlv(
        data, h.tlv_offset, h.length, [&](std::size_t off, std::uint8_t type, std::size_t vlen) {
            ++h.tlvs;
            if (type == pp2::kCrc32c) {
                if (vlen != 4) return "v2: a CRC32C TLV whose value is not 4 bytes";
                if (crc_at) return "v2: two CRC32C TLVs";
                crc_at = off + 3;
            } else if (type == pp2::kUniqueId && vlen > 128) {
                return "v2: a UNIQUE_ID longer than 128 bytes";
            } else if (type == pp2::kSsl) {  // client flags (1), verify (4), then sub-TLVs
                if (vlen < 5) return "v2: an SSL TLV shorter than its fixed fields";
                return each_tlv(
                    data, off + 8, off + 3 + vlen,
                    [](std::size_t, std::uint8_t, std::size_t) -> const char* { return nullptr; });
            }
            return static_cast<const char*>(nullptr);
        });
    if (why || !crc_at) return why;
    // The checksum of the whole header with its own 4 bytes taken as zeros.
    static constexpr std::uint8_t kZeros[4] = {};
    std::uint32_t c = crc_update(~0u, data, crc_at);
    c = crc_update(c, kZeros, 4);
    c = ~crc_update(c, data + crc_at + 4, h.length - crc_at - 4);
    const std::uint32_t sent = std::uint32_t(data[crc_at]) << 24 |
                               std::uint32_t(data[crc_at + 1]) << 16 |
                               std::uint32_t(data[crc_at + 2]) << 8 | data[crc_at + 3];
    return c == sent ? nullptr : "v2: its CRC32C does not match";
}

ProxyHeader parse_v2(const std::uint8_t* data, std::size_t n) {
    if (n < 16) return ProxyHeader{};
    const std::uint8_t ver = data[12] >> 4, cmd = data[12] & 0x0f;
    if (ver != 2) return invalid("v2: version is not 2");
    if (cmd > 1) return invalid("v2: command is neither LOCAL nor PROXY");
    const std::uint8_t fam = data[13] >> 4, proto = data[13] & 0x0f;
    if (fam > 3 || proto > 2) return invalid("v2: unknown family or protocol");
    const std::size_t len = std::size_t(data[14]) << 8 | data[15];
    if (16 + len > kProxyV2Max) return invalid("v2: longer than accepted");
    if (n < 16 + len) return ProxyHeader{};
    ProxyHeader h;
    h.version = 2;
    h.length = 16 + len;
    static constexpr std::size_t kAddrLen[4] = {0, 12, 36, 216};
    const std::size_t alen = kAddrLen[fam];
    if (len < alen) return invalid("v2: addresses longer than the header");
    const std::uint8_t* a = data + 16;
    if (cmd == 0 || fam == 0 || fam == 3 || proto == 0) {
        h.local = true;  // LOCAL, UNSPEC, UNIX: the connection's own addresses stand
    } else {
        const std::size_t ip = fam == 1 ? 4 : 16;
        h.src.family = h.dst.family = fam == 1 ? AF_INET : AF_INET6;
        std::memcpy(h.src.addr, a, ip);
        std::memcpy(h.dst.addr, a + ip, ip);
        h.src.port = std::uint16_t(a[2 * ip] << 8 | a[2 * ip + 1]);
        h.dst.port = std::uint16_t(a[2 * ip + 2] << 8 | a[2 * ip + 3]);
    }
    h.tlv_offset = std::uint16_t(16 + alen);
    if (const char* why = check_tlvs(data, h)) return invalid(why);
    h.status = ProxyHeader::Status::kDone;
    return h;
}

}  // namespace

ProxyHeader parse_proxy_header(const std::uint8_t* data, std::size_t n) noexcept {
    if (n == 0) return ProxyHeader{};
    if (is_prefix(data, n, kSignature, sizeof kSignature))
        return n < sizeof kSignature ? ProxyHeader{} : parse_v2(data, n);
    if (is_prefix(data, n, "PROXY ", 6)) return n < 6 ? ProxyHeader{} : parse_v1(data, n);
    return invalid("not a PROXY protocol header");
}

std::size_t copy_tlvs(const std::uint8_t* data, const ProxyHeader& h, const TlvTypes& pass,
                      std::byte* out) noexcept {
    std::size_t n = 0;
    if (h.version != 2) return 0;
    each_tlv(data, h.tlv_offset, h.length,
             [&](std::size_t off, std::uint8_t type, std::size_t vlen) -> const char* {
                 if (type == pp2::kCrc32c || !pass.test(type)) return nullptr;
                 if (out) std::memcpy(out + n, data + off, 3 + vlen);
                 n += 3 + vlen;
                 return nullptr;
             });
    return n;
}

}  // namespace fp::net
