#include "app/self_check.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <ostream>
#include <random>
#include <vector>

#include "alloc/frag.hpp"
#include "alloc/frag_cache.hpp"
#include "net/engine/fixed_buffers.hpp"
#include "net/engine/uring_ring.hpp"

namespace fp::app {
namespace {

bool churn(FragCache& cache, std::ostream& out) {
    std::mt19937 rng(42);
    std::vector<FragRef> held;
    for (int i = 0; i < 200000; ++i) {
        std::size_t n = 1 + rng() % 2048;
        void* p = cache.alloc(n, 8);
        if (!p) {
            out << "  churn: allocation failed after " << i << " fragments\n";
            return false;
        }
        held.emplace_back(p, n);
        if (held.size() > 64) held.erase(held.begin() + static_cast<long>(rng() % held.size()));
    }
    const FragStats& s = cache.stats();
    out << "  churn: " << s.fragments.get() << " fragments, " << s.refills.get() << " refills, "
        << s.reuses.get() << " in-place reuses\n";
    return true;
}

bool receive_fixed(FragCache& cache, std::ostream& out) {
    net::UringRing ring(8);
    net::FixedBuffers fixed(ring, cache.pool());
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return false;
    const char msg[] = "fragproxy self-check";
    bool ok = ::write(sv[0], msg, sizeof msg) == static_cast<ssize_t>(sizeof msg);
    auto tail = cache.probe(sizeof msg);
    net::FixedSlice slice = fixed.locate(tail.data());
    io_uring_sqe* sqe = io_uring_get_sqe(ring.get());
    io_uring_prep_read_fixed(sqe, sv[1], slice.addr, static_cast<unsigned>(tail.size()), 0,
                             slice.index);
    io_uring_submit(ring.get());
    io_uring_cqe* cqe = nullptr;
    ok = ok && io_uring_wait_cqe(ring.get(), &cqe) == 0 && cqe->res == sizeof msg;
    FragRef frag(cache.commit(ok ? sizeof msg : 0), sizeof msg);
    ok = ok && std::memcmp(frag.data(), msg, sizeof msg) == 0;
    if (cqe) io_uring_cqe_seen(ring.get(), cqe);
    ::close(sv[0]);
    ::close(sv[1]);
    out << "  read_fixed into a fragment of buffer " << slice.index << " of " << fixed.count()
        << ": " << (ok ? "ok" : "FAILED") << "\n";
    return ok;
}

}  // namespace

bool self_check(const PoolConfig& config, std::ostream& out) {
    PagePool pool(config);
    bool ok = true;
    {
        FragCache cache(pool);
        ok = churn(cache, out) && receive_fixed(cache, out);
    }
    std::size_t leaked = pool.pages_in_use();
    out << "  pages still in use after drain: " << leaked << "\n";
    return ok && leaked == 0;
}

}  // namespace fp::app
