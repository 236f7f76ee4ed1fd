#include "net/base/state_table.hpp"

#include <doctest/doctest.h>

#include "tests/support/death.hpp"

using namespace fp;
using namespace fp::net;

namespace {
enum class S : std::uint8_t { kA, kB, kC, kEnd };
constexpr StateTable<S, 4> kEdges{
    {S::kA, S::kB}, {S::kB, S::kC}, {S::kA, S::kEnd}, {S::kB, S::kEnd}, {S::kC, S::kEnd}};
}  // namespace

TEST_CASE("a state table allows exactly its edges") {
    static_assert(kEdges.allows(S::kA, S::kB) && !kEdges.allows(S::kB, S::kA));
    CHECK(kEdges.allows(S::kC, S::kEnd));
    CHECK_FALSE(kEdges.allows(S::kA, S::kC));
    CHECK_FALSE(kEdges.allows(S::kA, S::kA));  // no edge to itself unless listed
    CHECK(kEdges.final(S::kEnd));
    CHECK_FALSE(kEdges.final(S::kA));
}

TEST_CASE("set_state writes an allowed edge and counts nothing") {
    Counter illegal;
    S s = S::kA;
    CHECK(set_state(s, S::kB, kEdges, illegal));
    CHECK(set_state(s, S::kEnd, kEdges, illegal));
    CHECK(s == S::kEnd);
    CHECK(illegal.get() == 0);
}

#ifdef FRAGPROXY_DEBUG
TEST_CASE("an illegal transition aborts in debug and sanitizer builds, saying which") {
    const auto d = test::run_in_child([] {
        Counter illegal;
        S s = S::kEnd;
        set_state(s, S::kA, kEdges, illegal);
    });
    CHECK(d.aborted);
    CHECK(d.stderr_text.find("illegal state transition 3 -> 0") != std::string::npos);
}
#else
TEST_CASE("an illegal transition is counted in release builds, and still made") {
    Counter illegal;
    S s = S::kEnd;
    CHECK_FALSE(set_state(s, S::kA, kEdges, illegal));
    CHECK(s == S::kA);
    CHECK(illegal.get() == 1);
}
#endif
