// CidrList (longest prefix decides, v4 and v6, host bits ignored) and SourceTable (per-source cap,
// token bucket, release; two threads under TSan).
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <thread>

#include "net/policy/source_policy.hpp"

using namespace fp::net;

namespace {
AccessAddr ip(const char* text) {
    AccessAddr a;
    if (::inet_pton(AF_INET, text, a.addr) == 1) {
        a.family = AF_INET;
    } else {
        REQUIRE(::inet_pton(AF_INET6, text, a.addr) == 1);
        a.family = AF_INET6;
    }
    return a;
}
Cidr cidr(const char* text) {
    Cidr c;
    REQUIRE(Cidr::parse(text, c));
    return c;
}
}  // namespace

TEST_CASE("CIDR parsing: prefixes, plain addresses, host bits cleared, bad strings refused") {
    CHECK(cidr("10.1.2.3/8").str() == "10.0.0.0/8");
    CHECK(cidr("192.168.1.7").str() == "192.168.1.7/32");
    CHECK(cidr("2001:db8::1/32").str() == "2001:db8::/32");
    CHECK(cidr("::1").str() == "::1/128");
    CHECK(cidr("10.0.0.0/0").str() == "0.0.0.0/0");
    Cidr c;
    for (const char* bad : {"", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/x",
                            "host.example/8", "10.0.0.0/-1"})
        CHECK_FALSE(Cidr::parse(bad, c));
}

TEST_CASE("the longest matching prefix decides, whatever the order") {
    CidrList l;
    l.add(cidr("10.0.0.0/8"), true);
    l.add(cidr("10.1.0.0/16"), false);
    l.add(cidr("10.1.2.0/24"), true);
    l.add(cidr("2001:db8::/32"), true);
    CHECK(l.allowed(ip("10.9.9.9")));
    CHECK_FALSE(l.allowed(ip("10.1.9.9")));
    CHECK(l.allowed(ip("10.1.2.9")));
    CHECK_FALSE(l.allowed(ip("11.0.0.1")));  // an allow list exists: the rest is refused
    CHECK(l.allowed(ip("2001:db8:5::1")));
    CHECK_FALSE(l.allowed(ip("2001:db9::1")));
    CHECK_FALSE(l.allowed(AccessAddr{}));  // no address (getpeername failed)
    CidrList deny_only;
    deny_only.add(cidr("127.0.0.3"), false);
    CHECK(deny_only.allowed(ip("127.0.0.2")));
    CHECK_FALSE(deny_only.allowed(ip("127.0.0.3")));
    CHECK(deny_only.allowed(ip("::1")));
}

TEST_CASE("per-source cap: the cap-th connection passes, the next does not, release makes room") {
    SourceTable t;
    const AccessAddr a = ip("10.0.0.1"), b = ip("10.0.0.2");
    for (int i = 0; i < 3; ++i)
        CHECK(t.admit(a, 3, {}, 0) == SourceTable::Verdict::kOk);
    CHECK(t.admit(a, 3, {}, 0) == SourceTable::Verdict::kTooMany);
    CHECK(t.admit(b, 3, {}, 0) == SourceTable::Verdict::kOk);  // another source: its own count
    t.release(a);
    CHECK(t.admit(a, 3, {}, 0) == SourceTable::Verdict::kOk);
}

TEST_CASE("per-source rate: a burst, then one per period's share") {
    SourceTable t;
    const AccessAddr a = ip("10.0.0.1");
    const RateLimit r{10, 1000, 3};  // 10/s, burst 3
    std::uint64_t now = 5000;
    for (int i = 0; i < 3; ++i)
        CHECK(t.admit(a, 0, r, now) == SourceTable::Verdict::kOk);
    CHECK(t.admit(a, 0, r, now) == SourceTable::Verdict::kTooFast);
    CHECK(t.admit(a, 0, r, now + 50) == SourceTable::Verdict::kTooFast);  // half a token
    CHECK(t.admit(a, 0, r, now + 100) == SourceTable::Verdict::kOk);      // one token
    CHECK(t.admit(a, 0, r, now + 100) == SourceTable::Verdict::kTooFast);
    now += 10000;  // a long pause refills to the burst, not beyond
    for (int i = 0; i < 3; ++i)
        CHECK(t.admit(a, 0, r, now) == SourceTable::Verdict::kOk);
    CHECK(t.admit(a, 0, r, now) == SourceTable::Verdict::kTooFast);
    const RateLimit per_minute{1, 60000, 1};
    CHECK(t.admit(ip("10.0.0.9"), 0, per_minute, now) == SourceTable::Verdict::kOk);
    CHECK(t.admit(ip("10.0.0.9"), 0, per_minute, now + 59000) == SourceTable::Verdict::kTooFast);
    CHECK(t.admit(ip("10.0.0.9"), 0, per_minute, now + 60000) == SourceTable::Verdict::kOk);
}

TEST_CASE("two workers admitting and releasing one source never exceed the cap") {
    SourceTable t;
    const AccessAddr a = ip("10.0.0.1");
    std::atomic<int> open{0}, peak{0};
    auto worker = [&] {
        for (int i = 0; i < 20000; ++i) {
            if (t.admit(a, 4, {}, 0) != SourceTable::Verdict::kOk) continue;
            const int n = open.fetch_add(1) + 1;
            int p = peak.load();
            while (n > p && !peak.compare_exchange_weak(p, n)) {
            }
            open.fetch_sub(1);
            t.release(a);
        }
    };
    std::thread x(worker), y(worker);
    x.join();
    y.join();
    CHECK(peak.load() <= 4);
    CHECK(t.admit(a, 1, {}, 0) == SourceTable::Verdict::kOk);  // everything released
}
