// Bad input to the allocator is a checked error, never silent corruption: each case runs in a
// child process and must abort with a message that says what was wrong.
#include <doctest/doctest.h>

#include "alloc/frag.hpp"
#include "alloc/frag_cache.hpp"
#include "tests/support/death.hpp"

using namespace fp;

namespace {
constexpr std::size_t kMiB = std::size_t{1} << 20;

template <class Fn>
void expect_abort(Fn&& fn, const char* why) {
    test::Death d = test::run_in_child([&] {
        PagePool pool(PoolConfig{2 * kMiB, 4, 0, false});
        FragCache cache(pool);
        fn(pool, cache);
    });
    CHECK(d.aborted);
    CHECK_MESSAGE(d.stderr_text.find(why) != std::string::npos, d.stderr_text);
}
}  // namespace

TEST_CASE("zero and over-page sizes are rejected") {
    expect_abort([](PagePool&, FragCache& c) { c.alloc(0); }, "sizes are 1..65536");
    expect_abort([](PagePool&, FragCache& c) { c.alloc(65537); }, "sizes are 1..65536");
    expect_abort([](PagePool&, FragCache& c) { c.probe(0); }, "sizes are 1..65536");
}

TEST_CASE("bad alignment is rejected") {
    expect_abort([](PagePool&, FragCache& c) { c.alloc(8, 3); }, "power of two");
    expect_abort([](PagePool&, FragCache& c) { c.alloc(8, 0); }, "power of two");
    expect_abort([](PagePool&, FragCache& c) { c.alloc(8, 1 << 17); }, "power of two");
}

TEST_CASE("commit without a matching probe is rejected") {
    expect_abort([](PagePool&, FragCache& c) { c.commit(10); }, "without a probe");
    expect_abort(
        [](PagePool&, FragCache& c) {
            auto tail = c.probe(100);
            c.commit(tail.size() + 1);
        },
        "without a probe");
}

TEST_CASE("a pointer from no arena is rejected") {
    expect_abort(
        [](PagePool&, FragCache&) {
            static int not_a_fragment;
            frag_free(&not_a_fragment);
        },
        "not from any fragment arena");
    expect_abort([](PagePool&, FragCache&) { drain(reinterpret_cast<void*>(8), 1); },
                 "not from any fragment arena");
}

TEST_CASE("a fragment of a free page is rejected") {
    expect_abort([](PagePool& pool, FragCache&) { frag_free(pool.arena().base() + 100); },
                 "not a fragment of a page in use");
}

TEST_CASE("draining more references than a page holds is rejected") {
    expect_abort(
        [](PagePool& pool, FragCache& c) {
            void* p = c.alloc(10);
            c.drain();
            drain(pool, *pool.page_of(p), 2);
        },
        "refcount underflow");
}

TEST_CASE("a fragment freed twice is caught") {
#ifdef FRAGPROXY_DEBUG
    // Debug builds know every live fragment, so a double free is caught even while the page has
    // other live fragments.
    expect_abort(
        [](PagePool&, FragCache& c) {
            void* p = c.alloc(10);
            c.alloc(10);
            frag_free(p);
            frag_free(p);
        },
        "not a live fragment");
#endif
    // Every build catches it once the page's count would go below zero.
    expect_abort(
        [](PagePool&, FragCache& c) {
            void* p = c.alloc(10);
            c.drain();
            frag_free(p);  // the page goes back to the pool
            frag_free(p);
        },
        "not a fragment of a page in use");
}
