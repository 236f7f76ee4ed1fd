// Randomized model test of LentFrags, the fragments receive path's side of the bias protocol,
// driven as the kernel drives a provided-buffer ring without incremental consumption: simulated
// completions take what arrived at a lent slot's fragment's start (short ones, often: their tail
// stays lent in the slot), else the slot is carved again at once, fragments are freed by the owner
// (back to the page's bias) or remotely (frag_free), one by one or a page's run at once; the cache
// is trimmed now and then (the once-a-second tick). After every step:
//   - every slot lends a distinct fragment, within one fragment-sized and -aligned carve, no two
//     lent or taken fragments overlapping,
//   - for every page, refs == live fragments (taken or lent) + the cache's bias,
//   - the pool's pages in use are exactly the pages with fragments or held by the cache,
//   - every taken fragment still holds the bytes written into it.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "alloc/frag.hpp"
#include "alloc/frag_debug.hpp"
#include "alloc/lent_frags.hpp"

using namespace fp;

namespace {

struct Taken {
    std::uint32_t len;
    Page* page;
    unsigned char fill;
};

struct FragsModel {
    PagePool& pool;
    LentFrags& lent;
    std::uint32_t frag;  // bytes per fragment
    std::mt19937_64 rng;
    std::map<std::byte*, Taken> taken;
    unsigned tails = 0;

    std::uint32_t live_on(const Page* p) const {
        std::uint32_t n = 0;
        for (auto& [ptr, t] : taken)
            n += t.page == p;
        for (unsigned i = 0; i < lent.entries(); ++i)
            if (std::byte* f = lent.lent_at(std::uint16_t(i))) n += pool.page_of(f) == p;
        return n;
    }

    void check_bytes(std::byte* p, const Taken& t) {
        auto* b = reinterpret_cast<unsigned char*>(p);
        for (std::uint32_t i = 0; i < t.len; i += 97)
            REQUIRE(b[i] == t.fill);
        if (t.len) REQUIRE(b[t.len - 1] == t.fill);
    }

    void step_complete() {
        std::vector<std::uint16_t> slots;
        for (unsigned i = 0; i < lent.entries(); ++i)
            if (lent.lent_at(std::uint16_t(i))) slots.push_back(std::uint16_t(i));
        if (slots.empty()) return;
        std::uint16_t bid = slots[rng() % slots.size()];
        std::byte* expect = lent.lent_at(bid);
        const std::uint32_t size = std::uint32_t(lent.bytes(bid).size());
        // Half the receives are short (a request, the end of a burst): their tails stay lent.
        auto len = std::uint32_t(1 + rng() % (rng() % 2 ? size : std::min(size, 3000u)));
        std::byte* p = lent.take(bid, len);
        REQUIRE(p == expect);
        const std::uint32_t at = (len + LentFrags::kTailAlign - 1) & ~(LentFrags::kTailAlign - 1);
        if (at < size && size - at >= lent.min_tail()) {
            REQUIRE(lent.lent_at(bid) == p + at);  // the tail, lent again
            REQUIRE(lent.bytes(bid).size() == size - at);
            ++tails;
        } else {
            REQUIRE(lent.lent_at(bid) == nullptr);
            lent.refill();  // the slot is carved again at once, in completion context
        }
        auto fill = static_cast<unsigned char>(rng());
        std::memset(p, fill, len);
        taken[p] = {len, pool.page_of(p), fill};
    }

    void step_free() {
        auto it = std::next(taken.begin(), static_cast<long>(rng() % taken.size()));
        check_bytes(it->first, it->second);
        if (rng() % 2)
            lent.free(it->first);
        else
            frag_free(it->first);
        taken.erase(it);
    }

    void step_free_run() {
        Page* page = std::next(taken.begin(), static_cast<long>(rng() % taken.size()))->second.page;
        std::byte* any = nullptr;
        std::uint32_t n = 0;
        for (auto it = taken.begin(); it != taken.end();) {
            if (it->second.page != page) {
                ++it;
                continue;
            }
            check_bytes(it->first, it->second);
            frag_debug::untrack(it->first);
            any = it->first;
            it = taken.erase(it);
            ++n;
        }
        lent.free_run(any, n);
    }

    void check_invariant() {
        std::set<const Page*> pages;
        std::map<std::byte*, std::size_t> spans;  // every live fragment, lent or taken
        for (auto& [p, t] : taken) {
            pages.insert(t.page);
            spans[p] = t.len;
        }
        for (unsigned i = 0; i < lent.entries(); ++i) {
            std::byte* f = lent.lent_at(std::uint16_t(i));
            if (!f) continue;
            const auto span = lent.bytes(std::uint16_t(i));
            REQUIRE(spans.emplace(f, span.size()).second);
            const auto start = reinterpret_cast<std::uintptr_t>(f);
            REQUIRE(start / frag == (start + span.size() - 1) / frag);  // within one carve
            pages.insert(pool.page_of(f));
        }
        std::byte* end = nullptr;
        for (auto& [p, n] : spans) {  // no two overlap
            REQUIRE(p >= end);
            end = p + n;
        }
        lent.cache().for_each_held([&](const Page& page, std::uint32_t) { pages.insert(&page); });
        for (const Page* page : pages)
            REQUIRE(page->refs.load() == live_on(page) + lent.cache().bias_of(page));
        REQUIRE(pool.pages_in_use() == pages.size());
    }
};

}  // namespace

TEST_CASE("simulated fragment receives keep refs == live + bias; trim gives idle pages back") {
    constexpr std::size_t kMiB = std::size_t{1} << 20;
    // 16 KiB: four fragments per page; 64 KiB (the default): a page each, the cache's page
    // used up by every carve.
    for (std::uint32_t frag : {16u * 1024, 64u * 1024})
        for (std::uint64_t seed : {1, 2, 3}) {
            CAPTURE(frag);
            CAPTURE(seed);
            PagePool pool(PoolConfig{8 * kMiB, 4, 0, false});  // 128 pages of 64 KiB
            LentFrags lent(pool, 16, frag);
            FragsModel m{pool, lent, frag, std::mt19937_64(seed), {}};
            while (lent.refill()) {
            }
            CHECK(lent.lent() == 16);
            for (int step = 0; step < 6000; ++step) {
                unsigned op = m.rng() % 100;
                if (m.taken.size() > 200 || (op < 40 && !m.taken.empty()))
                    m.step_free();
                else if (op < 45 && !m.taken.empty())
                    m.step_free_run();
                else if (op < 47)
                    lent.trim();
                else if (op < 49)  // the relay's replenish: slots left empty when memory ran out
                    while (lent.refill()) {
                    }
                else
                    m.step_complete();
                m.check_invariant();
            }
            CHECK(m.tails > 100);
            while (!m.taken.empty())
                m.step_free();
            while (lent.refill()) {  // (64 KiB: 200 taken pin more pages than the pool has)
            }
            CHECK(lent.lent() == 16);
            lent.trim();  // only the pages of lent fragments (and the current one) are left
            m.check_invariant();
            std::set<const Page*> needed;
            for (unsigned i = 0; i < lent.entries(); ++i)
                needed.insert(pool.page_of(lent.lent_at(std::uint16_t(i))));
            if (lent.cache().page()) needed.insert(lent.cache().page());
            CHECK(pool.pages_in_use() == needed.size());
            lent.drain();
            CHECK(lent.lent() == 0);
            CHECK(pool.pages_in_use() == 0);
        }
}
