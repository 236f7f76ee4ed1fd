// Randomized model test of LentPages, the receive ring's side of the bias protocol, driven as the
// kernel drives it: simulated completions pick a lent slot, consume part of its page (a multishot
// recv with incremental consumption), and either keep the slot (IORING_CQE_F_BUF_MORE) or end it
// (an ejection). Fragments are freed by the owner (back to the bias while the page is lent) or
// remotely (frag_free, the atomic path), one by one or a page's run at once (free_run). After
// every step:
//   - every fragment lies at its slot's running offset, on the slot's page, and no two overlap,
//   - for every page, refs == live fragments + bias of the slot lending it,
//   - the pool's pages in use are exactly the lent pages and those with live fragments,
//   - every live fragment still holds the pattern written into it,
// and a page whose fragments were all freed before its ejection is lent again in place.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "alloc/frag.hpp"
#include "alloc/frag_debug.hpp"
#include "alloc/lent_pages.hpp"

using namespace fp;

namespace {

struct Frag {
    std::uint32_t size;
    Page* page;
    unsigned char fill;
};

struct RingModel {
    PagePool& pool;
    LentPages& lent;
    std::mt19937_64 rng;
    std::map<std::byte*, Frag> live;
    std::vector<std::uint32_t> offset;  // per slot: the model's running offset

    std::uint32_t live_in(const Page* p) const {
        std::uint32_t n = 0;
        for (auto& [ptr, f] : live)
            n += f.page == p;
        return n;
    }

    std::vector<std::uint16_t> lent_slots() const {
        std::vector<std::uint16_t> v;
        for (unsigned i = 0; i < lent.entries(); ++i)
            if (lent.slot(std::uint16_t(i)).page) v.push_back(std::uint16_t(i));
        return v;
    }

    void check_bytes(std::byte* p, const Frag& f) {
        auto* bytes = reinterpret_cast<unsigned char*>(p);
        for (std::uint32_t i = 0; i < f.size; i += 97)
            REQUIRE(bytes[i] == f.fill);
        REQUIRE(bytes[f.size - 1] == f.fill);
    }

    // One completion on a random lent slot: part of the page's rest, or all of it; `more` false
    // (the kernel is done with the buffer) ejects the slot.
    void step_complete() {
        auto slots = lent_slots();
        if (slots.empty()) return;
        std::uint16_t bid = slots[rng() % slots.size()];
        const BiasedPage& s = lent.slot(bid);
        std::uint32_t rest = s.size - offset[bid];
        bool more = rest > 0 && rng() % 8 != 0;
        std::uint32_t len =
            rest == 0 ? 0 : (rng() % 4 == 0 ? rest : 1 + std::uint32_t(rng() % rest));
        if (len == rest) more = false;  // a full buffer is always done
        Page* page = s.page;
        std::byte* expect = s.va + offset[bid];
        if (len > 0) {
            std::byte* p = lent.take(bid, len);
            REQUIRE(p == expect);
            auto fill = static_cast<unsigned char>(rng());
            std::memset(p, fill, len);
            live[p] = {len, page, fill};
            offset[bid] += len;
        }
        if (rng() % 4 ==
            0) {  // the sends of the page's fragments completed before the kernel is done with it
            for (auto it = live.begin(); it != live.end();) {
                if (it->second.page != page) {
                    ++it;
                    continue;
                }
                check_bytes(it->first, it->second);
                lent.free(it->first);
                it = live.erase(it);
            }
        }
        if (!more) {
            const bool whole = live_in(page) == 0 && !page->reserve;
            const auto reuses = lent.stats().reuses.get();
            bool again = lent.eject(bid);
            offset[bid] = 0;
            if (whole) {  // every fragment already back: lent again in place
                CHECK(again);
                CHECK(lent.slot(bid).page == page);
                CHECK(lent.stats().reuses.get() == reuses + 1);
            }
        }
    }

    void step_free() {
        auto it = std::next(live.begin(), static_cast<long>(rng() % live.size()));
        check_bytes(it->first, it->second);
        if (rng() % 2)
            lent.free(it->first);  // the owner: local while the page is lent
        else
            frag_free(it->first);  // another thread's path: the atomic decrement
        live.erase(it);
    }

    // A closing connection's queue: every live fragment of one page, in one call.
    void step_free_run() {
        auto any = std::next(live.begin(), static_cast<long>(rng() % live.size()));
        Page* page = any->second.page;
        std::byte* first = any->first;
        std::uint32_t n = 0;
        for (auto it = live.begin(); it != live.end();) {
            if (it->second.page != page) {
                ++it;
                continue;
            }
            check_bytes(it->first, it->second);
            frag_debug::untrack(it->first);
            it = live.erase(it);
            ++n;
        }
        lent.free_run(first, n);
    }

    void refill() {
        while (auto bid = lent.refill())
            offset[*bid] = 0;
    }

    void check_invariant() {
        std::set<const Page*> pages;
        std::map<const Page*, std::uint32_t> bias;
        for (auto& [p, f] : live)
            pages.insert(f.page);
        for (unsigned i = 0; i < lent.entries(); ++i) {
            const BiasedPage& s = lent.slot(std::uint16_t(i));
            if (!s.page) continue;
            pages.insert(s.page);
            bias[s.page] = s.bias;
            REQUIRE(s.page->held == LentPages::kTag);
        }
        for (const Page* page : pages)
            REQUIRE(page->refs.load() == live_in(page) + bias[page]);
        REQUIRE(pool.pages_in_use() == pages.size());
    }
};

}  // namespace

TEST_CASE("simulated receive completions keep refs == live + bias on lent pages") {
    constexpr std::size_t kMiB = std::size_t{1} << 20;
    for (std::uint64_t seed : {1, 2, 3, 4}) {
        CAPTURE(seed);
        PagePool pool(PoolConfig{8 * kMiB, 4, 0, false});  // 128 pages: exhaustion happens
        LentPages lent(pool, 8);
        RingModel m{pool, lent, std::mt19937_64(seed), {}, std::vector<std::uint32_t>(8)};
        m.refill();
        for (int step = 0; step < 6000; ++step) {
            unsigned op = m.rng() % 100;
            if (m.live.size() > 400 || (op < 35 && !m.live.empty()))
                m.step_free();
            else if (op < 40 && !m.live.empty())
                m.step_free_run();
            else if (op < 45)
                m.refill();
            else
                m.step_complete();
            m.check_invariant();
        }
        CHECK(lent.stats().reuses.get() > 0);
        CHECK(lent.stats().refills.get() > 8);
        while (!m.live.empty())
            m.step_free();
        lent.drain();
        CHECK(lent.lent() == 0);
        CHECK(pool.pages_in_use() == 0);
    }
}

TEST_CASE("an ejected page with live fragments is left to them and a pool page takes its slot") {
    PagePool pool(PoolConfig{std::size_t{4} << 20, 4, 0, false});
    LentPages lent(pool, 1);
    REQUIRE(lent.refill() == std::uint16_t{0});
    Page* first = lent.slot(0).page;
    std::byte* a = lent.take(0, 1000);
    std::byte* b = lent.take(0, 2000);
    CHECK(b == a + 1000);
    CHECK(first->refs.load() == 2 + lent.slot(0).bias);
    REQUIRE(lent.eject(0));
    CHECK(lent.slot(0).page != first);
    CHECK(first->held == 0);
    CHECK(first->refs.load() == 2);  // the bias is given back: only the fragments hold it
    lent.free(a);                    // not lent any more: the atomic path
    CHECK(first->refs.load() == 1);
    frag_free(b);
    CHECK(pool.pages_in_use() == 1);  // the first page went back with its last fragment
    lent.drain();
    CHECK(pool.pages_in_use() == 0);
}
