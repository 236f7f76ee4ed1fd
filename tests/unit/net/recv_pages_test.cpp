// The receive ring on a real io_uring: a multishot recv with buffer select lands in the lent
// pages, piece after piece of one page (incremental consumption), each piece a fragment that the
// owner frees back into the page's bias; nothing is left in use after the ring is gone.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <system_error>
#include <vector>

#include "alloc/page_pool.hpp"
#include "net/engine/recv_pages.hpp"
#include "net/engine/uapi.hpp"
#include "net/engine/uring_ring.hpp"
#include "tests/support/skip.hpp"
#include "tests/support/socket_pair.hpp"

using namespace fp;

namespace {

using test::SocketPair;

std::unique_ptr<net::UringRing> ring_or_skip() {
    try {
        return std::make_unique<net::UringRing>(net::UringRing::best(64));
    } catch (const std::system_error& e) {
        test::skip(e.what());
    }
}

struct Completion {
    int res;
    unsigned flags;
};

Completion next_cqe(net::UringRing& ring) {
    io_uring_submit(ring.get());
    io_uring_cqe* cqe = nullptr;
    REQUIRE(io_uring_wait_cqe(ring.get(), &cqe) == 0);
    Completion c{cqe->res, cqe->flags};
    io_uring_cqe_seen(ring.get(), cqe);
    return c;
}

}  // namespace

TEST_CASE("receives land piece after piece in one lent page and come back to its bias") {
    auto ring = ring_or_skip();
    PagePool pool(PoolConfig{std::size_t{4} << 20, 4, 0, false});
    std::unique_ptr<net::RecvPages> recv;
    try {
        recv = std::make_unique<net::RecvPages>(*ring, pool, 4, 3, net::RecvMode::kIncremental);
    } catch (const std::system_error& e) {
        test::skip(e.what());  // a kernel before 6.12: no incremental consumption
    }
    CHECK(recv->offered() == 4);
    CHECK(pool.pages_in_use() == 4);

    SocketPair sp;
    io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
    io_uring_prep_recv_multishot(sqe, sp.fd[1], nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = recv->group();

    std::byte* first = nullptr;
    std::uint16_t first_bid = 0;
    const char* pieces[] = {"the first piece", "a second, longer piece of bytes", "3"};
    std::byte* frags[3];
    for (int i = 0; i < 3; ++i) {
        const std::size_t n = std::strlen(pieces[i]);
        REQUIRE(::write(sp.fd[0], pieces[i], n) == static_cast<ssize_t>(n));
        Completion c = next_cqe(*ring);
        REQUIRE(c.res == static_cast<int>(n));
        REQUIRE((c.flags & IORING_CQE_F_BUFFER));
        CHECK((c.flags & IORING_CQE_F_MORE));       // the multishot goes on
        CHECK((c.flags & net::uapi::kCqeBufMore));  // and so does the page
        auto bid = std::uint16_t(c.flags >> IORING_CQE_BUFFER_SHIFT);
        frags[i] = recv->take(bid, std::uint32_t(c.res), true);
        CHECK(std::memcmp(frags[i], pieces[i], n) == 0);  // the bytes, where the kernel put them
        if (i == 0) {
            first = frags[0];
            first_bid = bid;
        } else {
            CHECK(bid == first_bid);  // the same page, at its running offset
            CHECK(frags[i] == frags[i - 1] + std::strlen(pieces[i - 1]));
        }
    }
    const Page* page = pool.page_of(first);
    const std::uint32_t bias = recv->pages()->slot(first_bid).bias;
    CHECK(page->refs.load() == bias + 3);  // three live fragments + the bias
    for (std::byte* f : frags)
        recv->free(f);  // owner frees: back into the bias, no atomic op
    CHECK(recv->pages()->slot(first_bid).bias == bias + 3);
    CHECK(page->refs.load() == recv->pages()->slot(first_bid).bias);
    CHECK(pool.pages_in_use() == 4);

    // The multishot ends when the peer closes (res 0, no buffer): nothing to take.
    ::shutdown(sp.fd[0], SHUT_WR);
    Completion end = next_cqe(*ring);
    CHECK(end.res == 0);
    CHECK_FALSE((end.flags & IORING_CQE_F_MORE));
    recv.reset();
    CHECK(pool.pages_in_use() == 0);
}

// A bundle (IORING_RECVSEND_BUNDLE) names only the first buffer it filled: the rest follow it in
// ring order, which RecvPages keeps. Without incremental consumption a short receive's tail goes
// back to the ring's end, so ring order is not buffer-id order; the bytes must come out whole.
TEST_CASE("a bundle completion fills buffers in ring order, one fragment each") {
    for (auto mode : {net::RecvMode::kIncremental, net::RecvMode::kFragments}) {
        CAPTURE(int(mode));
        auto ring = ring_or_skip();
        if (!(ring->features().kernel_features & net::uapi::kFeatRecvsendBundle))
            test::skip("this kernel has no receive bundles (Linux 6.10)");
        PagePool pool(PoolConfig{std::size_t{4} << 20, 2, 0, false});  // 16 KiB pages
        std::unique_ptr<net::RecvPages> recv;
        try {
            recv = std::make_unique<net::RecvPages>(*ring, pool, 4, 3, mode, 16384);
        } catch (const std::system_error& e) {
            test::skip(e.what());  // a kernel before 6.12: no incremental consumption
        }
        SocketPair sp;
        io_uring_sqe* sqe = io_uring_get_sqe(ring->get());
        io_uring_prep_recv_multishot(sqe, sp.fd[1], nullptr, 0, 0);
        sqe->ioprio |= net::uapi::kRecvsendBundle;
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = recv->group();

        std::vector<unsigned char> sent(41000), got;
        for (std::size_t i = 0; i < sent.size(); ++i)
            sent[i] = static_cast<unsigned char>(i * 7 + i / 251);
        std::vector<std::byte*> frags;
        unsigned widest = 0;
        auto receive = [&](std::size_t from, std::size_t to) {
            REQUIRE(::write(sp.fd[0], sent.data() + from, to - from) == ssize_t(to - from));
            while (got.size() < to) {
                Completion c = next_cqe(*ring);
                REQUIRE(c.res > 0);
                REQUIRE((c.flags & IORING_CQE_F_BUFFER));
                const unsigned n = recv->take_each(
                    std::uint16_t(c.flags >> IORING_CQE_BUFFER_SHIFT), std::uint32_t(c.res),
                    c.flags & net::uapi::kCqeBufMore, [&](std::byte* f, std::uint32_t len) {
                        auto* b = reinterpret_cast<unsigned char*>(f);
                        got.insert(got.end(), b, b + len);
                        frags.push_back(f);
                    });
                widest = std::max(widest, n);
            }
        };
        receive(0, 1000);      // the first buffer's head (its tail offered again: fragments)
        receive(1000, 41000);  // more than two buffers hold
        CHECK(got == sent);
        CHECK(widest >= 2);  // a completion spanned several buffers
        for (std::byte* f : frags)
            recv->free(f);
        ::shutdown(sp.fd[0], SHUT_WR);
        CHECK(next_cqe(*ring).res == 0);
        recv.reset();
        CHECK(pool.pages_in_use() == 0);
    }
}
