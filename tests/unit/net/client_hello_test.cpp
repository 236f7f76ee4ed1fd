// The ClientHello reader routes use: ClientHellos built here field by field (RFC 8446 4.1.2,
// RFC 6066 3) in one or many records, every prefix, what is not TLS, and each way one can be
// invalid; then how a server name picks a route.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "net/policy/route.hpp"
#include "net/wire/client_hello.hpp"

using namespace fp::net;
using Bytes = std::vector<std::uint8_t>;

namespace {

void put16(Bytes& b, std::size_t v) {
    b.push_back(std::uint8_t(v >> 8));
    b.push_back(std::uint8_t(v));
}
Bytes cat(std::initializer_list<Bytes> parts) {
    Bytes out;
    for (const Bytes& p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}
Bytes ext(std::uint16_t type, const Bytes& value) {
    Bytes e;
    put16(e, type);
    put16(e, value.size());
    return cat({e, value});
}
// server_name with these (name_type, name) entries.
Bytes sni(std::initializer_list<std::pair<std::uint8_t, std::string>> names) {
    Bytes list;
    for (const auto& [type, name] : names) {
        list.push_back(type);
        put16(list, name.size());
        list.insert(list.end(), name.begin(), name.end());
    }
    Bytes v;
    put16(v, list.size());
    return ext(0, cat({v, list}));
}
Bytes sni(const std::string& name) {
    return sni({{0, name}});
}
struct Fields {
    std::size_t session = 32, suites = 4, compression = 1;
    bool extensions = true;
    int ext_len_delta = 0;  // the extensions block's length field, off by this much
};
Bytes body(const std::vector<Bytes>& exts, Fields f = {}) {
    Bytes b{3, 3};
    b.insert(b.end(), 32, 0xab);  // random
    b.push_back(std::uint8_t(f.session));
    b.insert(b.end(), f.session, 0x11);
    put16(b, f.suites);
    for (std::size_t i = 0; i < f.suites; ++i)
        b.push_back(i % 2 ? 0x01 : 0x13);
    b.push_back(std::uint8_t(f.compression));
    b.insert(b.end(), f.compression, 0);
    if (!f.extensions) return b;
    Bytes all;
    for (const Bytes& e : exts)
        all = cat({all, e});
    put16(b, std::size_t(int(all.size()) + f.ext_len_delta));
    return cat({b, all});
}
Bytes handshake(const Bytes& body, std::uint8_t type = 1) {
    Bytes h{type, std::uint8_t(body.size() >> 16), std::uint8_t(body.size() >> 8),
            std::uint8_t(body.size())};
    return cat({h, body});
}
// The handshake bytes in records of at most `max` bytes each.
Bytes records(const Bytes& hs, std::size_t max = 16384, std::uint8_t type = 22) {
    Bytes out;
    for (std::size_t at = 0; at < hs.size(); at += max) {
        const std::size_t n = std::min(max, hs.size() - at);
        out.insert(out.end(), {type, 3, 1, std::uint8_t(n >> 8), std::uint8_t(n)});
        out.insert(out.end(), hs.begin() + std::ptrdiff_t(at), hs.begin() + std::ptrdiff_t(at + n));
    }
    return out;
}
ClientHello parse(const Bytes& b) {
    return parse_client_hello(b.data(), b.size());
}
ClientHello parse(const std::string& s) {
    return parse_client_hello(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}
std::string invalid_why(const Bytes& b) {
    const ClientHello h = parse(b);
    CHECK(h.status == ClientHello::Status::kInvalid);
    return h.error;
}
const Bytes kVersions = ext(43, {4, 3, 4, 3, 3});  // supported_versions, as TLS 1.3 sends it

}  // namespace

TEST_CASE("a ClientHello's server name is read, in lower case, and every prefix asks for more") {
    const Bytes hello =
        records(handshake(body({kVersions, sni("API.Example.COM"), ext(10, {0, 2, 0, 29})})));
    const ClientHello h = parse(hello);
    REQUIRE(h.status == ClientHello::Status::kDone);
    CHECK(h.server_name() == "api.example.com");
    for (std::size_t n = 0; n < hello.size(); ++n)
        REQUIRE(parse_client_hello(hello.data(), n).status == ClientHello::Status::kIncomplete);
    Bytes more = cat({hello, {23, 3, 3, 0, 1, 0}});  // what follows it is not read
    CHECK(parse(more).server_name() == "api.example.com");
}

TEST_CASE("a ClientHello split into records anywhere reads the same") {
    const Bytes hs = handshake(body({sni("www.svc.example.com"), kVersions}));
    for (std::size_t max : {1u, 2u, 3u, 7u, 64u, 100u}) {
        const Bytes hello = records(hs, max);
        const ClientHello h = parse(hello);
        REQUIRE(h.status == ClientHello::Status::kDone);
        CHECK(h.server_name() == "www.svc.example.com");
        for (std::size_t n = 0; n < hello.size(); ++n)
            REQUIRE(parse_client_hello(hello.data(), n).status == ClientHello::Status::kIncomplete);
    }
}

TEST_CASE("no server name: none sent, no extensions at all, or only other name types") {
    CHECK(parse(records(handshake(body({kVersions})))).status == ClientHello::Status::kDone);
    CHECK(parse(records(handshake(body({kVersions})))).server_name().empty());
    Fields none;
    none.extensions = false;
    CHECK(parse(records(handshake(body({}, none)))).status == ClientHello::Status::kDone);
    const ClientHello other = parse(records(handshake(body({sni({{7, "opaque"}})}))));
    CHECK(other.status == ClientHello::Status::kDone);
    CHECK(other.server_name().empty());
}

TEST_CASE(
    "the largest ClientHello is read; a longer one is refused as soon as its length says so") {
    const Bytes small = body({sni("big.example.com")});
    const std::size_t pad =
        kClientHelloMax - 4 - small.size() - 4;  // the padding extension's value
    const Bytes max = records(handshake(body({sni("big.example.com"), ext(21, Bytes(pad, 0))})));
    const ClientHello h = parse(max);
    REQUIRE(h.status == ClientHello::Status::kDone);
    CHECK(h.server_name() == "big.example.com");
    const Bytes over =
        records(handshake(body({sni("big.example.com"), ext(21, Bytes(pad + 1, 0))})));
    CHECK(invalid_why(Bytes(over.begin(), over.begin() + 9)) ==
          std::string("ClientHello: longer than 16 KiB"));
}

TEST_CASE("bytes that do not start a TLS handshake record are not TLS") {
    CHECK(parse(std::string("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).status ==
          ClientHello::Status::kNotTls);
    CHECK(parse(std::string("SSH-2.0-OpenSSH_9.2\r\n")).status == ClientHello::Status::kNotTls);
    CHECK(parse(Bytes{0x80, 0x2e, 0x01, 0x03, 0x01}).status ==
          ClientHello::Status::kNotTls);                                         // SSLv2
    CHECK(parse(Bytes{23, 3, 3, 0, 5}).status == ClientHello::Status::kNotTls);  // application data
    CHECK(parse(Bytes{22, 2}).status == ClientHello::Status::kNotTls);
    CHECK(parse(Bytes{22, 3, 9}).status == ClientHello::Status::kNotTls);
    CHECK(parse(Bytes{22}).status == ClientHello::Status::kIncomplete);
}

TEST_CASE("a TLS record that does not carry a valid ClientHello is invalid") {
    const Bytes good = body({sni("a.example.com")});
    CHECK(invalid_why(records(handshake(good, 2))) ==
          std::string("a handshake that is not a ClientHello"));
    CHECK(invalid_why(Bytes{22, 3, 1, 0, 0}) ==
          std::string("a record of 0 or more than 16384 bytes"));
    CHECK(invalid_why(Bytes{22, 3, 1, 0x40, 0x01}) ==
          std::string("a record of 0 or more than 16384 bytes"));
    // The message goes on in a record that is not a handshake.
    const Bytes hs = handshake(good);
    Bytes mixed = records(Bytes(hs.begin(), hs.begin() + 10));
    mixed = cat({mixed, records(Bytes(hs.begin() + 10, hs.end()), 16384, 23)});
    CHECK(invalid_why(mixed) ==
          std::string("a record that is not a handshake inside the ClientHello"));
    Fields f;
    f.session = 33;
    CHECK(invalid_why(records(handshake(body({}, f)))) ==
          std::string("ClientHello: a session id longer than 32 bytes"));
    f = {};
    f.suites = 3;
    CHECK(invalid_why(records(handshake(body({}, f)))) ==
          std::string("ClientHello: cipher suites of an odd or no size"));
    f = {};
    f.compression = 0;
    CHECK(invalid_why(records(handshake(body({}, f)))) ==
          std::string("ClientHello: no compression method"));
    f = {};
    f.ext_len_delta = 1;
    CHECK(invalid_why(records(handshake(body({sni("a.b")}, f)))) ==
          std::string("ClientHello: extensions not filling it"));
    CHECK(invalid_why(records(handshake(Bytes{3, 3, 0}))) ==
          std::string("ClientHello: shorter than its fixed fields"));
    CHECK(invalid_why(records(handshake(body({sni("a.b"), sni("c.d")})))) ==
          std::string("ClientHello: an extension sent twice"));
    CHECK(invalid_why(records(handshake(body({sni({{0, "a.b"}, {0, "c.d"}})})))) ==
          std::string("server_name: two host names"));
    CHECK(invalid_why(records(handshake(body({sni("example.com.")})))) ==
          std::string("server_name: a host name with a trailing dot"));
    CHECK(invalid_why(records(handshake(body({sni("exa mple.com")})))) ==
          std::string("server_name: a host name with a byte not allowed in one"));
    CHECK(invalid_why(records(handshake(body({sni(std::string("a\0b", 3))})))) ==
          std::string("server_name: a host name with a byte not allowed in one"));
    CHECK(invalid_why(records(handshake(body({sni("")})))) ==
          std::string("server_name: a host name of 0 or more than 255 bytes"));
    CHECK(invalid_why(records(handshake(body({ext(0, {})})))) ==
          std::string("server_name: a list that is not its size"));
    CHECK(invalid_why(records(handshake(body({ext(0, {0, 9, 0, 0, 3, 'a'})})))) ==
          std::string("server_name: a list that is not its size"));
}

TEST_CASE("a ClientHello in one-byte records: refused once the scan limit is reached") {
    const Bytes hs = handshake(body({sni("slow.example.com"), ext(21, Bytes(4000, 0))}));
    const Bytes hello = records(hs, 1);  // six bytes per byte of the message
    REQUIRE(hello.size() > kClientHelloScan);
    CHECK(parse_client_hello(hello.data(), kClientHelloScan - 1).status ==
          ClientHello::Status::kIncomplete);
    CHECK(invalid_why(hello) == std::string("ClientHello: split into too many records"));
}

TEST_CASE("routes: exact names first, then the longest wildcard at any depth, then the default") {
    Routing r;
    r.routes.resize(4);
    r.routes[0].names = {"api.example.com"};
    r.routes[1].suffixes = {".example.com"};
    r.routes[2].suffixes = {".svc.example.com"};
    r.routes[2].names = {"svc.example.com"};
    CHECK(r.match("api.example.com") == 0);
    CHECK(r.match("www.example.com") == 1);
    CHECK(r.match("a.b.c.example.com") == 1);
    CHECK(r.match("x.svc.example.com") == 2);
    CHECK(r.match("y.x.svc.example.com") == 2);
    CHECK(r.match("svc.example.com") == 2);
    CHECK(r.match("example.com") == -1);  // a wildcard does not match its own apex
    CHECK(r.match("notexample.com") == -1);
    CHECK(r.match("") == -1);
    r.routes[3].fallback = true;
    CHECK(r.fallback() == 3);
    CHECK(r.match("example.com") == 3);
    CHECK(r.match("") == 3);
    CHECK(r.match("api.example.com") == 0);
}
