// Registration of an arena with io_uring as fixed buffers, proven by receiving from a socketpair
// with read_fixed straight into fragments of the cache.
#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "alloc/frag.hpp"
#include "alloc/frag_cache.hpp"
#include "net/engine/fixed_buffers.hpp"
#include "net/engine/uring_ring.hpp"
#include "tests/support/death.hpp"
#include "tests/support/socket_pair.hpp"

using namespace fp;

namespace {
constexpr std::size_t kMiB = std::size_t{1} << 20;

using test::SocketPair;

int read_fixed(net::UringRing& ring, int fd, net::FixedSlice s, unsigned len) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring.get());
    io_uring_prep_read_fixed(sqe, fd, s.addr, len, 0, s.index);
    io_uring_submit(ring.get());
    io_uring_cqe* cqe = nullptr;
    REQUIRE(io_uring_wait_cqe(ring.get(), &cqe) == 0);
    int res = cqe->res;
    io_uring_cqe_seen(ring.get(), cqe);
    return res;
}
}  // namespace

TEST_CASE("every fragment maps to the registered buffer that holds it") {
    PagePool pool(PoolConfig{4 * kMiB, 4, 0, false});
    net::UringRing ring(8);
    net::FixedBuffers fixed(ring, pool);
    CHECK(fixed.count() == 64);
    CHECK(fixed.buffer_bytes() == 64 * 1024);
    std::byte* base = pool.arena().base();
    CHECK(fixed.locate(base).index == 0);
    CHECK(fixed.locate(base + 65535).index == 0);
    CHECK(fixed.locate(base + 65536).index == 1);
    CHECK(fixed.locate(base + 4 * kMiB - 1).index == 63);
    CHECK(fixed.locate(base + 777).addr == base + 777);
}

TEST_CASE("read_fixed from a socketpair lands in fragments of the registered arena") {
    PagePool pool(PoolConfig{4 * kMiB, 4, 0, false});
    FragCache cache(pool);
    net::UringRing ring(8);
    net::FixedBuffers fixed(ring, pool);
    SocketPair sp;
    std::string sent;
    std::vector<FragRef> got;
    for (int i = 0; i < 40; ++i) {  // ~40 x 3 KiB: crosses into a second page and buffer
        std::string msg(3000 + i, static_cast<char>('a' + i % 26));
        REQUIRE(::write(sp.fd[0], msg.data(), msg.size()) == static_cast<ssize_t>(msg.size()));
        auto tail = cache.probe(msg.size());
        REQUIRE(tail.size() >= msg.size());
        int n = read_fixed(ring, sp.fd[1], fixed.locate(tail.data()),
                           static_cast<unsigned>(msg.size()));
        REQUIRE(n == static_cast<int>(msg.size()));
        got.emplace_back(cache.commit(static_cast<std::size_t>(n)), static_cast<std::size_t>(n));
        sent += msg;
    }
    std::string received;
    for (auto& f : got)
        received.append(reinterpret_cast<char*>(f.data()), f.size());
    CHECK(received == sent);
    CHECK(cache.stats().refills.get() >= 2);
    CHECK(fixed.locate(got.front().data()).index != fixed.locate(got.back().data()).index);
    got.clear();
    cache.drain();
    CHECK(pool.pages_in_use() == 0);
}

TEST_CASE("arenas too large for 16384 buffers use larger iovecs") {
    PagePool pool(PoolConfig{128 * kMiB, 0, 0, false});  // 32768 base pages
    net::UringRing ring(8);
    net::FixedBuffers fixed(ring, pool);
    CHECK(fixed.count() == 16384);
    CHECK(fixed.buffer_bytes() == 8192);
}

TEST_CASE("a registration over RLIMIT_MEMLOCK fails with an error naming the limit") {
    // As an unprivileged user (root is exempt), with a 1 MiB memlock limit, pin an 8 MiB arena.
    test::Death d = test::run_in_child([] {
        rlimit rl{kMiB, kMiB};
        if (::setrlimit(RLIMIT_MEMLOCK, &rl) != 0) std::_Exit(3);
        if (::getuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) std::_Exit(3);
        try {
            PagePool pool(PoolConfig{8 * kMiB, 4, 0, false});
            net::UringRing ring(8);
            net::FixedBuffers fixed(ring, pool);
        } catch (const std::system_error& e) {
            std::fputs(e.what(), stderr);
            std::abort();
        }
    });
    CHECK(d.aborted);
    CHECK_MESSAGE(d.stderr_text.find("RLIMIT_MEMLOCK, which is 1024 KiB") != std::string::npos,
                  d.stderr_text);
    CHECK(d.stderr_text.find("memory.arena") != std::string::npos);
}
