// SlotTable: slots reused with a new generation, stale generations not found, capacity bounded;
// growing it moves no entry.
#include <doctest/doctest.h>

#include <vector>

#include "net/engine/slot_table.hpp"

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

TEST_CASE("the table never holds more than reserved, and entries never move") {
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

TEST_CASE("growing the table (a reload) leaves every entry where it is") {
    SlotTable<Entry> t;
    t.reserve(1500);  // two chunks
    std::vector<Entry*> at;
    for (int i = 0; i < 1500; ++i) {
        auto s = t.open();
        REQUIRE(s);
        t[*s].value = i;
        at.push_back(&t[*s]);
    }
    CHECK(t.full());
    t.reserve(5000);
    CHECK(t.capacity() == 5000);
    for (int i = 0; i < 3500; ++i)
        REQUIRE(t.open());
    CHECK(t.full());
    for (std::uint32_t i = 0; i < 1500; ++i) {
        CHECK(&t[i] == at[i]);
        CHECK(t[i].value == int(i));
    }
    t.reserve(100);  // never shrinks
    CHECK(t.capacity() == 5000);
}
