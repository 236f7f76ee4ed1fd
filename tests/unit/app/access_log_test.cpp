// AccessLog::format: the json and text lines, addresses (v4, v6, none), escaping, UTC time.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include "app/access_log.hpp"

using namespace fp;

namespace {
net::AccessAddr v4(const char* ip, std::uint16_t port) {
    net::AccessAddr a;
    a.family = AF_INET;
    a.port = port;
    ::inet_pton(AF_INET, ip, a.addr);
    return a;
}
}  // namespace

TEST_CASE("json: every field, exact") {
    net::AccessRecord r;
    r.start_ms = 1000;
    r.end_ms = 1250;
    r.bytes_to_upstream = 7;
    r.bytes_to_client = 9;
    r.client = v4("10.0.0.1", 40000);
    r.upstream = v4("10.0.0.2", 443);
    r.end = net::AccessEnd::kUpstreamClose;
    r.set_listener("we\"b");
    CHECK(app::AccessLog::format(r, true, 1764120000123) ==
          "{\"time\":\"2025-11-26T01:20:00.123Z\",\"listener\":\"we\\\"b\",\"protocol\":\"tcp\","
          "\"client\":\"10.0.0.1:40000\",\"upstream\":\"10.0.0.2:443\",\"duration_ms\":250,"
          "\"bytes_client_to_upstream\":7,\"bytes_upstream_to_client\":9,"
          "\"end\":\"upstream_close\"}\n");
}

TEST_CASE("text: v6 in brackets, a missing upstream as -") {
    net::AccessRecord r;
    r.udp = true;
    r.client.family = AF_INET6;
    r.client.port = 53;
    ::inet_pton(AF_INET6, "::1", r.client.addr);
    r.end = net::AccessEnd::kRejected;
    r.set_listener("dns");
    CHECK(app::AccessLog::format(r, false, 0) ==
          "1970-01-01T00:00:00.000Z dns udp [::1]:53 - 0ms 0 0 rejected\n");
}
