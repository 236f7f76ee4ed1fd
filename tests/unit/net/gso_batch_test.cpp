// The UDP GSO batching rule: what may go out together and be cut apart again unchanged.
#include <doctest/doctest.h>

#include "net/udp/gso_batch.hpp"

using namespace fp::net;

TEST_CASE("segments of one size, and one shorter datagram that ends the batch") {
    CHECK(gso::joins(1000, 1, 1000, 1000));       // same size
    CHECK(gso::joins(999, 5, 1000, 1000));        // shorter: joins, and seals the batch
    CHECK_FALSE(gso::joins(1000, 6, 1000, 999));  // after a shorter one nothing follows
    CHECK_FALSE(gso::joins(5, 6, 1000, 999));
    CHECK_FALSE(gso::joins(1001, 1, 1000, 1000));  // longer than the batch's segments
    CHECK_FALSE(gso::joins(10, 0, 0, 0));          // no open batch
}

TEST_CASE("at most 32 segments and 65507 bytes in one batch") {
    CHECK(gso::kMaxSegments == 32);
    CHECK(gso::joins(100, 31, 100, 100));
    CHECK_FALSE(gso::joins(100, 32, 100, 100));
    // 1472-byte segments: 44 * 1472 = 64768 fits, but 32 segments come first.
    CHECK_FALSE(gso::joins(1472, 32, 1472, 1472));
    // 8000-byte segments: 8 * 8000 = 64000 fits, a 9th would be 72000.
    CHECK(gso::joins(8000, 7, 8000, 8000));
    CHECK_FALSE(gso::joins(8000, 8, 8000, 8000));
    CHECK(gso::kMaxBytes == 65507);
}

TEST_CASE("each segment within the path's MTU; empty datagrams go alone") {
    CHECK(gso::max_segment(false, 1500) == 1472);
    CHECK(gso::max_segment(true, 1500) == 1452);
    CHECK(gso::max_segment(false, 0) == 1472);  // not known: Ethernet's
    CHECK(gso::max_segment(true, -1) == 1452);
    CHECK(gso::max_segment(false, 1280) == 1252);
    CHECK(gso::max_segment(false, 65536) == 65507);  // loopback: capped at the largest datagram
    CHECK(gso::batchable(1, 1472));
    CHECK(gso::batchable(1472, 1472));
    CHECK_FALSE(gso::batchable(1473, 1472));
    CHECK_FALSE(gso::batchable(0, 1472));
}
