// Ring::best: the setup flags it takes for each task-run choice (io_uring: {taskrun: ...}).
#include <doctest/doctest.h>

#include <system_error>

#include "net/ring.hpp"
#include "tests/support/skip.hpp"

using namespace fp;

TEST_CASE("Ring::best takes the task-run mode asked for, and auto the best the kernel has") {
    unsigned best = 0;
    try {
        best = net::Ring::best(8).features().setup_flags;
    } catch (const std::system_error& e) {
        test::skip(e.what());
    }
    CHECK(net::Ring::best(8, net::TaskRun::kNone).features().setup_flags == 0);
    if (best & IORING_SETUP_DEFER_TASKRUN) {  // 6.1: the kernel takes each of the three
        CHECK(net::Ring::best(8, net::TaskRun::kDefer).features().setup_flags == best);
        const unsigned coop = net::Ring::best(8, net::TaskRun::kCoop).features().setup_flags;
        CHECK((coop & IORING_SETUP_COOP_TASKRUN) != 0);
        CHECK((coop & IORING_SETUP_DEFER_TASKRUN) == 0);
    } else {  // a kernel without DEFER_TASKRUN refuses it when asked for it alone
        CHECK_THROWS_AS(net::Ring::best(8, net::TaskRun::kDefer), std::system_error);
    }
}
