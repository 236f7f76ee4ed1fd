// SlotTable: slots reused with a new generation, stale generations not found, capacity fixed.
#include <doctest/doctest.h>

#include "net/slot_table.hpp"

using namespace fp::net;

namespace {
struct Entry : SlotHeader {
    int value = 0;
};
}  // namespace

TEST_CASE("a reused slot has a new generation; the old generation finds nothing") {
    SlotTable<Entry> t;
    t.reserve(2);
    auto a = t.open();
    REQUIRE(a);
    t[*a].value = 42;
    const std::uint32_t gen = t[*a].gen;
    CHECK(t.find(*a, gen) == &t[*a]);
    CHECK(t.live() == 1);
    t.close(*a);
    CHECK(t.find(*a, gen) == nullptr);  // closed
    auto b = t.open();
    REQUIRE(b);
    CHECK(*b == *a);              // the slot is reused ...
    CHECK(t[*b].gen == gen + 1);  // ... in a new generation ...
    CHECK(t[*b].value == 0);      // ... as a fresh entry
    CHECK(t[*b].pending == 0);
    CHECK(t.find(*b, gen) == nullptr);  // a CQE of the old life is recognised
    CHECK(t.find(*b, gen + 1) == &t[*b]);
    CHECK(t.find(99, 1) == nullptr);  // out of range
}

TEST_CASE("the table never grows past what was reserved (the kernel holds pointers into it)") {
    SlotTable<Entry> t;
    t.reserve(3);
    Entry* first = nullptr;
    for (int i = 0; i < 3; ++i) {
        auto s = t.open();
        REQUIRE(s);
        if (!first) first = &t[*s];
    }
    CHECK(t.full());
    CHECK_FALSE(t.open());
    CHECK(&t[0] == first);
    t.close(1);
    CHECK_FALSE(t.full());
    CHECK(t.open() == std::uint32_t{1});
    CHECK(t.live() == 3);
}
