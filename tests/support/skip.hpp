#pragma once
// A unit test whose prerequisite is missing on this machine (io_uring refused, a kernel
// feature): says why and exits 77, which CTest reports as skipped (each doctest case runs as its
// own CTest test, so the other cases still run).
#include <cstdio>
#include <cstdlib>

namespace fp::test {

[[noreturn]] inline void skip(const char* why) {
    std::printf("SKIP: %s\n", why);
    std::fflush(stdout);
    std::_Exit(77);
}

}  // namespace fp::test
