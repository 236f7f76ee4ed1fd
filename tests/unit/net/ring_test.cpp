// UringRing::best: the setup flags it takes for each task-run choice (io_uring: {taskrun: ...});
// the direct-descriptor table.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <optional>
#include <system_error>

#include "net/engine/epoll_ring.hpp"
#include "net/engine/features.hpp"
#include "net/engine/uapi.hpp"
#include "net/engine/uring_ring.hpp"
#include "tests/support/skip.hpp"

using namespace fp;

TEST_CASE("UringRing::best takes the task-run mode asked for, and auto the best the kernel has") {
    unsigned best = 0;
    try {
        best = net::UringRing::best(8).features().setup_flags;
    } catch (const std::system_error& e) {
        test::skip(e.what());
    }
    CHECK(net::UringRing::best(8, net::TaskRun::kNone).features().setup_flags == 0);
    if (best & IORING_SETUP_DEFER_TASKRUN) {  // 6.1: the kernel takes each of the three
        CHECK(net::UringRing::best(8, net::TaskRun::kDefer).features().setup_flags == best);
        const unsigned coop = net::UringRing::best(8, net::TaskRun::kCoop).features().setup_flags;
        CHECK((coop & IORING_SETUP_COOP_TASKRUN) != 0);
        CHECK((coop & IORING_SETUP_DEFER_TASKRUN) == 0);
    } else {  // a kernel without DEFER_TASKRUN refuses it when asked for it alone
        CHECK_THROWS_AS(net::UringRing::best(8, net::TaskRun::kDefer), std::system_error);
    }
}

TEST_CASE("the start-up probe's task-run mode sets a worker's ring up with the probe's own flags") {
    // (what every worker does with taskrun: auto: Proxy resolves it once, from this probe)
    const net::KernelFeatures f = net::probe_kernel();
    if (!f.io_uring()) test::skip(f.refusal().c_str());
    for (unsigned entries : {8u, 256u, 4096u})
        CHECK(net::UringRing::best(entries, f.taskrun()).features().setup_flags == f.setup_flags);
}

TEST_CASE("UringRing::register_direct: a sparse table where the kernel has one, never on epoll") {
    net::EpollRing epoll(8);
    CHECK_FALSE(epoll.register_direct(8));
    CHECK(epoll.features().direct_files == 0);
    std::optional<net::UringRing> ring;
    try {
        ring.emplace(net::UringRing::best(8));
    } catch (const std::system_error& e) {
        test::skip(e.what());
    }
    if (!ring->features().fd_install) test::skip("no IORING_OP_FIXED_FD_INSTALL (Linux 6.8)");
    REQUIRE(ring->register_direct(4));
    CHECK(ring->features().direct_files == 4);
    // A socket made into the table, and a plain fd for it that is the same socket.
    io_uring_sqe* s = ring->sqe();
    io_uring_prep_socket_direct_alloc(s, AF_INET, SOCK_STREAM, 0, 0);
    ring->submit_and_wait(nullptr);
    int index = -1;
    ring->for_each_cqe([&](io_uring_cqe* c) { index = c->res; });
    REQUIRE(index >= 0);
    CHECK(index < 4);
    s = ring->sqe();
    net::uapi::prep_fixed_fd_install(s, index);
    ring->submit_and_wait(nullptr);
    int fd = -1;
    ring->for_each_cqe([&](io_uring_cqe* c) { fd = c->res; });
    REQUIRE(fd >= 0);
    int type = 0;
    socklen_t len = sizeof type;
    CHECK(::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0);
    CHECK(type == SOCK_STREAM);
    ::close(fd);
    ring->close_direct_now(index);
}

TEST_CASE("UringRing::register_napi: the busy-poll time set is the one the kernel gives back") {
    net::EpollRing epoll(8);
    CHECK(epoll.register_napi(50) == -EOPNOTSUPP);
    std::optional<net::UringRing> ring;
    try {
        ring.emplace(net::UringRing::best(8));
    } catch (const std::system_error& e) {
        test::skip(e.what());
    }
    const int rc = ring->register_napi(50);
    if (rc == -EINVAL) test::skip("no io_uring NAPI busy polling (Linux 6.9)");
    REQUIRE(rc == 0);
    std::uint32_t us = 0;
    REQUIRE(ring->unregister_napi(&us) == 0);
    CHECK(us == 50);
}

TEST_CASE(
    "UringRing::submit_and_wait_batch: returns with fewer CQEs than the batch, never with none") {
    CHECK_FALSE(net::EpollRing(8).batch_wait());
    std::optional<net::UringRing> ring;
    try {
        ring.emplace(net::UringRing::best(8));
    } catch (const std::system_error& e) {
        test::skip(e.what());
    }
    if (!ring->batch_wait()) test::skip("no io_uring min timeout (Linux 6.12)");
    // Three CQEs of a batch of 32: the wait ends at its minimum timeout (without one it would
    // wait for 32 and this test would not end).
    for (int i = 0; i < 3; ++i)
        io_uring_prep_nop(ring->sqe());
    CHECK(ring->submit_and_wait_batch(32, 1000) == 3);
    CHECK(ring->for_each_cqe([](io_uring_cqe*) {}) == 3);
    // Nothing by then: it waits on for the first CQE (a timeout op of 20 ms).
    __kernel_timespec ts{0, 20'000'000};
    io_uring_prep_timeout(ring->sqe(), &ts, 0, 0);
    CHECK(ring->submit_and_wait_batch(32, 100) == 1);
    int res = 0;
    CHECK(ring->for_each_cqe([&](io_uring_cqe* c) { res = c->res; }) == 1);
    CHECK(res == -ETIME);
}
