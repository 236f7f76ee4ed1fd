// AccessQueue: records come out in order and whole; a full queue drops and counts, never blocks;
// a producer and a consumer on two threads see every record once (run under TSan too).
#include <doctest/doctest.h>

#include <thread>

#include "net/base/access_record.hpp"

using namespace fp::net;

namespace {
AccessRecord numbered(std::uint64_t i) {
    AccessRecord r;
    r.start_ms = i;
    r.bytes_to_upstream = i * 3;
    r.set_listener("listener-" + std::to_string(i));
    return r;
}
}  // namespace

TEST_CASE("a full queue drops the record and counts it") {
    AccessQueue q;
    for (std::uint64_t i = 0; i < AccessQueue::kRecords; ++i)
        REQUIRE(q.push(numbered(i)));
    CHECK_FALSE(q.push(numbered(99999)));
    CHECK(q.dropped.get() == 1);
    AccessRecord r;
    REQUIRE(q.pop(r));
    CHECK(r.start_ms == 0);
    CHECK(q.push(numbered(AccessQueue::kRecords)));  // room again
    for (std::uint64_t i = 1; i <= AccessQueue::kRecords; ++i) {
        REQUIRE(q.pop(r));
        CHECK(r.start_ms == i);
    }
    CHECK_FALSE(q.pop(r));
}

TEST_CASE("listener names are cut to fit, never overrun") {
    AccessRecord r;
    r.set_listener(std::string(100, 'x'));
    CHECK(std::string(r.listener) == std::string(31, 'x'));
}

TEST_CASE("one producer, one consumer: every record once, in order, whole") {
    AccessQueue q;
    constexpr std::uint64_t kN = 200000;
    std::uint64_t sent = 0;
    std::thread producer([&] {
        for (std::uint64_t i = 0; i < kN; ++i)
            if (q.push(numbered(i))) ++sent;
    });
    std::uint64_t got = 0, last = 0;
    bool ordered = true, whole = true;
    AccessRecord r;
    while (got + q.dropped.get() < kN) {
        if (!q.pop(r)) continue;
        ordered &= got == 0 || r.start_ms > last;
        whole &= r.bytes_to_upstream == r.start_ms * 3 &&
                 std::string(r.listener) == "listener-" + std::to_string(r.start_ms);
        last = r.start_ms;
        ++got;
    }
    producer.join();
    while (q.pop(r))
        ++got;
    CHECK(ordered);
    CHECK(whole);
    CHECK(got == sent);
    CHECK(sent + q.dropped.get() == kN);
}
