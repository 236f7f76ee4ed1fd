#include "alloc/check.hpp"

#include <cstdarg>

namespace fp::detail {

void check_failed(const char* file, int line, const char* fmt, ...) noexcept {
    std::fprintf(stderr, "fragproxy: %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): va_start above (analyzer false positive)
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fputc('\n', stderr);
    std::fflush(stderr);
    std::abort();
}

}  // namespace fp::detail
