// Balancer and MaglevTable: smooth weighted round robin's order, least_conn and random2 by load
// for weight, Maglev's shares by weight and its minimal disruption (measured: when one of ten
// upstreams goes, about a tenth of the sources move).
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "net/policy/balance.hpp"

using namespace fp::net;

namespace {

std::uint64_t source(std::uint32_t i) {
    std::uint8_t b[4];
    std::memcpy(b, &i, 4);
    return hash_bytes(b);
}

constexpr auto kAll = [](std::size_t) { return true; };

std::vector<std::string> names(int n) {
    std::vector<std::string> v;
    for (int i = 0; i < n; ++i)
        v.push_back("10.0.0." + std::to_string(i + 1) + ":443");
    return v;
}

}  // namespace

TEST_CASE("round robin: weights 5:1:1 go a a b a c a a, as nginx's smooth round robin") {
    Balancer b;
    b.reset(3, 1);
    const std::uint32_t w[] = {5, 1, 1};
    std::string order;
    for (int i = 0; i < 7; ++i)
        order += char('a' + b.pick(
                                Balance::kRoundRobin, w, nullptr, 0, [](auto) { return 0; }, kAll));
    CHECK(order == "aabacaa");
}

TEST_CASE("least_conn: the fewest active for its weight; ties in turn") {
    Balancer b;
    b.reset(3, 1);
    std::uint32_t active[3] = {4, 1, 3};
    const std::uint32_t equal[] = {1, 1, 1};
    auto load = [&](std::size_t i) { return active[i]; };
    CHECK(b.pick(Balance::kLeastConn, equal, nullptr, 0, load, kAll) == 1);
    const std::uint32_t heavy[] = {10, 1, 1};  // 4/10 < 1/1
    CHECK(b.pick(Balance::kLeastConn, heavy, nullptr, 0, load, kAll) == 0);
    active[0] = active[1] = active[2] = 0;  // all equal: they take turns
    Balancer fresh;
    fresh.reset(3, 1);
    std::map<int, int> seen;
    for (int i = 0; i < 30; ++i)
        ++seen[fresh.pick(Balance::kLeastConn, equal, nullptr, 0, load, kAll)];
    CHECK(seen[0] == 10);
    CHECK(seen[1] == 10);
    CHECK(seen[2] == 10);
}

TEST_CASE("random2: never the more loaded of the two it drew") {
    Balancer b;
    b.reset(4, 7);
    const std::uint32_t w[] = {1, 1, 1, 1};
    std::uint32_t active[4] = {100, 0, 100, 100};
    int idle_picked = 0;
    for (int i = 0; i < 1000; ++i)
        idle_picked += b.pick(
                           Balance::kRandom2, w, nullptr, 0,
                           [&](std::size_t k) { return active[k]; }, kAll) == 1;
    // Upstream 1 wins whenever it is drawn: 1 - (3/4)^2 of the picks.
    CHECK(idle_picked > 400);
    CHECK(idle_picked < 480);
}

TEST_CASE("maglev: shares follow the weights") {
    const std::vector<std::uint32_t> w = {1, 2, 1, 4};
    MaglevTable t(names(4), w);
    std::map<int, int> count;
    constexpr int kSources = 80000;
    for (std::uint32_t i = 0; i < kSources; ++i)
        ++count[t.lookup(source(i))];
    for (int i = 0; i < 4; ++i) {
        const double want = double(kSources) * w[std::size_t(i)] / 8;
        CHECK(count[i] > want * 0.9);
        CHECK(count[i] < want * 1.1);
    }
}

TEST_CASE("maglev: when one of ten goes, about a tenth of the sources move") {
    auto before_names = names(10);
    MaglevTable before(before_names, std::vector<std::uint32_t>(10, 1));
    auto after_names = before_names;
    after_names.erase(after_names.begin() + 3);
    MaglevTable after(after_names, std::vector<std::uint32_t>(9, 1));
    constexpr int kSources = 100000;
    int moved = 0, lost = 0;
    for (std::uint32_t i = 0; i < kSources; ++i) {
        const std::string& was = before_names[before.lookup(source(i))];
        const std::string& now = after_names[after.lookup(source(i))];
        lost += was == before_names[3];
        moved += was != now;
    }
    MESSAGE("moved " << moved << " of " << kSources << " sources; " << lost
                     << " were on the removed upstream");
    CHECK(moved >= lost);                    // those of the removed one must move
    CHECK(moved < kSources / 10 * 13 / 10);  // and few others: under 1.3/N in all
    CHECK(lost > kSources / 10 * 8 / 10);
}

TEST_CASE("upstreams taken out are skipped by every balance; none left: kNone") {
    const std::uint32_t w[] = {1, 1, 1};
    bool up[3] = {true, false, true};
    auto usable = [&](std::size_t i) { return up[i]; };
    auto idle = [](std::size_t) { return 0; };
    auto names3 = names(3);
    MaglevTable t(names3, {1, 1, 1});
    for (Balance b :
         {Balance::kRoundRobin, Balance::kLeastConn, Balance::kRandom2, Balance::kSourceHash}) {
        Balancer bal;
        bal.reset(3, 3);
        for (std::uint32_t i = 0; i < 300; ++i)
            CHECK(bal.pick(b, w, &t, source(i), idle, usable) != 1);
        up[0] = up[2] = false;
        CHECK(bal.pick(b, w, &t, source(1), idle, usable) == Balancer::kNone);
        up[0] = up[2] = true;
    }
    // source_hash: the sources of the upstreams still up stay where they were.
    Balancer bal;
    int stayed = 0, on_others = 0;
    for (std::uint32_t i = 0; i < 3000; ++i) {
        const std::uint16_t own = t.lookup(source(i));
        if (own == 1) continue;
        ++on_others;
        stayed += bal.pick(Balance::kSourceHash, w, &t, source(i), idle, usable) == own;
    }
    CHECK(stayed == on_others);
}
